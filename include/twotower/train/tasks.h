// Auxiliary tasks (multi-task learning): the losses of the task heads of model/two_tower.h's
// TaskSpec, their targets and their metrics. The main objective (training.loss) keeps weight 1;
// task t adds weight_t * L_t to it:
//   regression (target y, head z = w . (u * v) + b):   L = mean_i (z_i - y_i)^2,  metric RMSE
//   item_class, one label c (head z = W v + b, C classes):
//       L = mean over labelled items of -log softmax(z)_c (cross-entropy),  metric accuracy
//   item_class with a delimiter (labels S, one sigmoid per class):
//       L = mean over labelled items of (1/C) sum_c [softplus(z_c) - [c in S] z_c],
//       metric: the share of items whose highest-scoring class is one of theirs
// (Caruana, "Multitask Learning", Machine Learning 28, 1997: hard parameter sharing; the towers
// are the shared part.) An item without a label (an empty cell) adds nothing.
// Thread-safety: free functions; TaskLosses needs exclusive use of the heads' gradients.
#ifndef TWOTOWER_TRAIN_TASKS_H_
#define TWOTOWER_TRAIN_TASKS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/data/dataset.h"
#include "twotower/model/two_tower.h"

namespace twotower::train {

struct TaskTargets {
  // Per task (config order). item_class: per item row, its class indices (sorted; empty = no
  // label); regression: empty.
  std::vector<std::vector<std::vector<int32_t>>> item_classes;
  // Per task: regression: its column's index in Interactions::targets; item_class: -1.
  std::vector<int> target_index;
};

// The interaction columns and the items-table columns LoadDataset must read for these tasks.
std::vector<std::string> TaskTargetColumns(const std::vector<model::TaskSpec>& tasks);
std::vector<std::string> TaskItemColumns(const std::vector<model::TaskSpec>& tasks);

// Fits each item_class task's classes (the sorted distinct labels of its column in
// data.item_text, cells split at the delimiter when there is one, empty labels dropped) into
// (*tasks)[t].classes, and returns every task's targets. Throws Error naming the task and column
// when the column was not loaded or has no label, or has more than 2^20 distinct labels.
TaskTargets FitTaskTargets(std::vector<model::TaskSpec>* tasks, const data::Dataset& data);
// The targets of tasks whose classes are already fitted (a loaded model), from the item text.
TaskTargets TaskTargetsFor(const std::vector<model::TaskSpec>& tasks,
                           const std::map<std::string, std::vector<std::string>>& item_text);

struct TaskBatch {
  const Matrix* u = nullptr;           // n x d: the pairs' user tower outputs
  const Matrix* v = nullptr;           // >= n rows x d: the pairs' items first
  const int32_t* item_rows = nullptr;  // n: each pair's item (row of the items table)
  int64_t n = 0;
  // Per task: regression: the n pairs' targets; item_class: null.
  std::vector<const float*> targets;
};

// Working buffers of TaskLosses, kept by the caller between steps so that a step of the same
// batch size allocates nothing (DESIGN.md, "Engine").
struct TaskScratch {
  RowVector dw;               // 1 x d: a regression head's weight gradient
  std::vector<Matrix> z, dz;  // per task, n x C_t: an item_class head's logits, their gradient
};

// Adds, for every task of `model`, weight_t * d L_t / d u into du (n x d), into the first n
// rows of dv, and into the head's parameter gradients; writes each L_t (unweighted) into
// *losses and returns sum_t weight_t L_t. Throws Error for a missing regression target.
// scratch: reused buffers (null: local ones).
double TaskLosses(model::TwoTowerModel& model, const TaskTargets& targets, const TaskBatch& batch,
                  Matrix* du, Matrix* dv, std::vector<double>* losses,
                  TaskScratch* scratch = nullptr);

// Each task's metric on a split, from every user's (u) and item's (v) embedding: regression the
// RMSE over the split's pairs, item_class the accuracy over the split's distinct labelled items.
// NaN where the split has nothing to score.
std::vector<double> EvaluateTasks(const model::TwoTowerModel& model, const TaskTargets& targets,
                                  const Matrix& u, const Matrix& v,
                                  const data::Interactions& split);

// "rmse" or "accuracy": the metric's name for a task.
const char* TaskMetricName(const model::TaskSpec& task);

}  // namespace twotower::train

#endif  // TWOTOWER_TRAIN_TASKS_H_
