#include "twotower/train/tasks.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "twotower/core/error.h"

namespace twotower::train {
namespace {

// The labels of one cell: the cell itself, or its parts at the delimiter; empty ones dropped.
std::vector<std::string> Labels(const std::string& cell, const std::string& delimiter) {
  std::vector<std::string> out;
  if (delimiter.empty()) {
    if (!cell.empty()) out.push_back(cell);
    return out;
  }
  size_t start = 0;
  while (start <= cell.size()) {
    const size_t end = cell.find(delimiter, start);
    const std::string part =
        cell.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!part.empty()) out.push_back(part);
    if (end == std::string::npos) break;
    start = end + delimiter.size();
  }
  return out;
}

double Softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::abs(z))); }

}  // namespace

const char* TaskMetricName(const model::TaskSpec& task) {
  return task.type == "regression" ? "rmse" : "accuracy";
}

std::vector<std::string> TaskTargetColumns(const std::vector<model::TaskSpec>& tasks) {
  std::vector<std::string> out;
  for (const model::TaskSpec& t : tasks) {
    if (t.type == "regression" && std::find(out.begin(), out.end(), t.column) == out.end()) {
      out.push_back(t.column);
    }
  }
  return out;
}

std::vector<std::string> TaskItemColumns(const std::vector<model::TaskSpec>& tasks) {
  std::vector<std::string> out;
  for (const model::TaskSpec& t : tasks) {
    if (t.type == "item_class" && std::find(out.begin(), out.end(), t.column) == out.end()) {
      out.push_back(t.column);
    }
  }
  return out;
}

TaskTargets FitTaskTargets(std::vector<model::TaskSpec>* tasks, const data::Dataset& data) {
  for (model::TaskSpec& t : *tasks) {
    if (t.type != "item_class") continue;
    const auto it = data.item_text.find(t.column);
    if (it == data.item_text.end()) {
      throw Error("task '" + t.name + "': the items table's column '" + t.column +
                  "' was not loaded");
    }
    std::set<std::string> classes;
    for (const std::string& cell : it->second) {
      for (std::string& label : Labels(cell, t.delimiter)) classes.insert(std::move(label));
    }
    if (classes.empty()) {
      throw Error(data.items.source + ": task '" + t.name + "': column '" + t.column +
                  "' has no label to predict");
    }
    if (classes.size() > (size_t{1} << 20)) {
      throw Error(data.items.source + ": task '" + t.name + "': column '" + t.column + "' has " +
                  std::to_string(classes.size()) + " distinct labels (at most 2^20)");
    }
    t.classes.assign(classes.begin(), classes.end());
  }
  return TaskTargetsFor(*tasks, data.item_text);
}

TaskTargets TaskTargetsFor(const std::vector<model::TaskSpec>& tasks,
                           const std::map<std::string, std::vector<std::string>>& item_text) {
  TaskTargets out;
  const std::vector<std::string> columns = TaskTargetColumns(tasks);
  for (const model::TaskSpec& t : tasks) {
    if (t.type == "regression") {
      out.target_index.push_back(
          static_cast<int>(std::find(columns.begin(), columns.end(), t.column) - columns.begin()));
      out.item_classes.emplace_back();
      continue;
    }
    out.target_index.push_back(-1);
    const auto it = item_text.find(t.column);
    if (it == item_text.end()) {
      throw Error("task '" + t.name + "': the items table's column '" + t.column +
                  "' was not loaded");
    }
    std::map<std::string, int32_t> index;
    for (size_t c = 0; c < t.classes.size(); ++c) index[t.classes[c]] = static_cast<int32_t>(c);
    std::vector<std::vector<int32_t>> per_item(it->second.size());
    for (size_t r = 0; r < it->second.size(); ++r) {
      for (const std::string& label : Labels(it->second[r], t.delimiter)) {
        const auto c = index.find(label);
        if (c != index.end()) per_item[r].push_back(c->second);  // unseen labels: none
      }
      std::sort(per_item[r].begin(), per_item[r].end());
      per_item[r].erase(std::unique(per_item[r].begin(), per_item[r].end()), per_item[r].end());
    }
    out.item_classes.push_back(std::move(per_item));
  }
  return out;
}

double TaskLosses(model::TwoTowerModel& model, const TaskTargets& targets, const TaskBatch& b,
                  Matrix* du, Matrix* dv, std::vector<double>* losses, TaskScratch* scratch) {
  const std::vector<model::TaskSpec>& tasks = model.config().tasks;
  losses->assign(tasks.size(), 0.0);
  TaskScratch local;
  TaskScratch& s = scratch != nullptr ? *scratch : local;
  const Matrix& u = *b.u;
  const Matrix& v = *b.v;
  const int64_t n = b.n;
  double total = 0.0;
  for (size_t t = 0; t < tasks.size(); ++t) {
    const model::TaskSpec& task = tasks[t];
    nn::Linear& head = model.task_head(t);
    const Matrix& w = head.weight().value;  // outputs x d
    const float weight = static_cast<float>(task.weight);
    if (task.type == "regression") {
      const float* y = t < b.targets.size() ? b.targets[t] : nullptr;
      if (y == nullptr) throw Error("task '" + task.name + "': no regression targets given");
      // z_i = w . (u_i * v_i) + b; L = mean (z - y)^2; dz = 2 (z - y) / n.
      double loss = 0.0;
      RowVector& dw = s.dw;
      dw.setZero(w.cols());
      double dbias = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double z =
            static_cast<double>((u.row(i).array() * v.row(i).array() * w.row(0).array()).sum()) +
            head.bias().value(0, 0);
        const double r = z - static_cast<double>(y[i]);
        loss += r * r;
        const float dz = static_cast<float>(2.0 * r / static_cast<double>(n));
        dw.array() += dz * u.row(i).array() * v.row(i).array();
        dbias += dz;
        du->row(i).array() += weight * dz * w.row(0).array() * v.row(i).array();
        dv->row(i).array() += weight * dz * w.row(0).array() * u.row(i).array();
      }
      head.weight().grad.row(0) += weight * dw;
      head.bias().grad(0, 0) += static_cast<float>(weight * dbias);
      (*losses)[t] = loss / static_cast<double>(n);
    } else {
      const std::vector<std::vector<int32_t>>& classes = targets.item_classes.at(t);
      const bool multi = !task.delimiter.empty();
      const int64_t C = w.rows();
      int64_t labelled = 0;
      for (int64_t i = 0; i < n; ++i) labelled += classes.at(b.item_rows[i]).empty() ? 0 : 1;
      if (labelled == 0) continue;
      s.z.resize(tasks.size());
      s.dz.resize(tasks.size());
      Matrix& z = s.z[t];
      z.resize(n, C);
      z.noalias() = v.topRows(n) * w.transpose();
      z.rowwise() += head.bias().value.row(0);
      Matrix& dz = s.dz[t];
      dz.setZero(n, C);
      double loss = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const std::vector<int32_t>& labels = classes[b.item_rows[i]];
        if (labels.empty()) continue;
        if (multi) {
          // (1/C) sum_c softplus(z_c) - y_c z_c; dz_c = (sigmoid(z_c) - y_c) / C.
          for (int64_t c = 0; c < C; ++c) {
            const bool y = std::binary_search(labels.begin(), labels.end(), c);
            loss += (Softplus(z(i, c)) - (y ? z(i, c) : 0.0)) / static_cast<double>(C);
            dz(i, c) = static_cast<float>((Sigmoid(z(i, c)) - (y ? 1.0 : 0.0)) /
                                          static_cast<double>(C * labelled));
          }
        } else {
          // -log softmax(z)_c with the largest logit subtracted first.
          const double m = z.row(i).maxCoeff();
          double sum = 0.0;
          for (int64_t c = 0; c < C; ++c) sum += std::exp(z(i, c) - m);
          const int32_t label = labels.front();
          loss += std::log(sum) + m - z(i, label);
          for (int64_t c = 0; c < C; ++c) {
            dz(i, c) =
                static_cast<float>(std::exp(z(i, c) - m) / sum / static_cast<double>(labelled));
          }
          dz(i, label) -= 1.0f / static_cast<float>(labelled);
        }
      }
      head.weight().grad.noalias() += weight * dz.transpose() * v.topRows(n);
      head.bias().grad.row(0) += weight * dz.colwise().sum();
      dv->topRows(n).noalias() += weight * dz * w;
      (*losses)[t] = loss / static_cast<double>(labelled);
    }
    total += task.weight * (*losses)[t];
  }
  return total;
}

std::vector<double> EvaluateTasks(const model::TwoTowerModel& model, const TaskTargets& targets,
                                  const Matrix& u, const Matrix& v,
                                  const data::Interactions& split) {
  const std::vector<model::TaskSpec>& tasks = model.config().tasks;
  std::vector<double> out(tasks.size(), std::numeric_limits<double>::quiet_NaN());
  for (size_t t = 0; t < tasks.size(); ++t) {
    const nn::Linear& head = model.task_head(t);
    const Matrix& w = head.weight().value;
    if (tasks[t].type == "regression") {
      const int index = targets.target_index.at(t);
      if (index < 0 || index >= static_cast<int>(split.targets.size()) || split.size() == 0) {
        continue;
      }
      const std::vector<float>& y = split.targets[index];
      double sum = 0.0;
      for (int64_t i = 0; i < split.size(); ++i) {
        const double z = static_cast<double>((u.row(split.user_row[i]).array() *
                                              v.row(split.item_row[i]).array() * w.row(0).array())
                                                 .sum()) +
                         head.bias().value(0, 0);
        sum += (z - y[i]) * (z - y[i]);
      }
      out[t] = std::sqrt(sum / static_cast<double>(split.size()));
      continue;
    }
    const std::vector<std::vector<int32_t>>& classes = targets.item_classes.at(t);
    std::vector<int32_t> items(split.item_row.begin(), split.item_row.end());
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    int64_t scored = 0, correct = 0;
    for (int32_t item : items) {
      const std::vector<int32_t>& labels = classes.at(item);
      if (labels.empty()) continue;
      Eigen::Index best = 0;
      (v.row(item) * w.transpose() + head.bias().value.row(0)).maxCoeff(&best);
      ++scored;
      correct +=
          std::binary_search(labels.begin(), labels.end(), static_cast<int32_t>(best)) ? 1 : 0;
    }
    if (scored > 0) out[t] = static_cast<double>(correct) / static_cast<double>(scored);
  }
  return out;
}

}  // namespace twotower::train
