// AttentionPooling: pools a variable-length sequence of embedding rows (a user's history, oldest
// first) into one vector with multi-head attention under a candidate-free query, the pooling of
// the user-history feature (data/schema.h's HistorySpec).
//
// For example i with query input x_i (the rest of the user tower's input: dense columns and
// pooled embeddings, width query_dim, possibly 0) and history rows e_1 .. e_L of a table T
// (L <= length, e_L the most recent), with H heads of width dh = dim / H, head h using columns
// [h dh, (h + 1) dh) of every vector:
//
//   q_i       = q_0 + W_q x_i                                  (dim; W_q: dim x query_dim)
//   s_{h,j}   = <q_{i,h}, e_{j,h}> / sqrt(dh) + r_{h, L-j}      (r: H x length, recency bias by
//                                                              steps back, 0 = the most recent)
//   a_{h,.}   = softmax_j(s_{h,.})                             over the L real entries only
//   out_{i,h} = sum_j a_{h,j} e_{j,h}
//
// The scaled dot-product attention of Vaswani et al. ("Attention Is All You Need", NeurIPS 2017,
// eq. 1) with one learned query per example instead of a query sequence, keys = values = the
// history rows (no key / value projections: the rows are already the item tower's learned
// embeddings, and a projection would cost a dim x dim GEMM per history entry). The ragged CSR
// layout is the padding mask: positions past a history's end do not exist, so they get no weight
// (a padded implementation masks them to -inf). An empty history pools to zeros.
// Mode kMean replaces the attention weights with 1 / L and has no parameters (the mean-pooled
// baseline).
//
// Parameter names follow a PyTorch module with `query` (1 x dim), `query_proj.weight` (dim x
// query_dim, only when query_dim > 0) and `recency` (H x length): "<prefix>query", ...
// Init: q_0 = 0, W_q uniform in +-1/sqrt(query_dim) (PyTorch's Linear default), r = 0, so a new
// model starts near mean pooling.
// Thread-safety: Infer is const and safe from many threads; Forward / Backward use a
// caller-owned AttentionContext and need exclusive use of the gradients. Backward never writes the
// table: it leaves d loss / d e_j in the context for the table's owner (ScatterTableGradient),
// since the table belongs to another tower whose backward may run at the same time.
#ifndef TWOTOWER_NN_ATTENTION_H_
#define TWOTOWER_NN_ATTENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "twotower/core/matrix.h"
#include "twotower/core/rng.h"
#include "twotower/data/encoder.h"
#include "twotower/nn/layer.h"
#include "twotower/nn/mlp.h"

namespace twotower::nn {

struct AttentionContext {
  const Matrix* table = nullptr;
  const Matrix* x = nullptr;  // the query input (n x query_dim); must outlive Backward
  const data::Bags* bags = nullptr;
  const int32_t* rows = nullptr;
  int64_t n = 0;
  Matrix q;                      // n x dim: the queries
  std::vector<float> weights;    // per history entry of the batch, H attention weights
  std::vector<int64_t> starts;   // n + 1: where each example's entries start in the batch
  Matrix dq;                     // n x dim: d loss / d q
  std::vector<float> dtable;     // per history entry, dim floats: d loss / d e_j
  std::vector<int32_t> entries;  // per history entry, its table row
};

class AttentionPooling {
 public:
  enum class Mode { kAttention, kMean };

  AttentionPooling() = default;
  // Throws Error for dim < 1, heads < 1 or not dividing dim, length < 1, query_dim < 0.
  AttentionPooling(Mode mode, int dim, int heads, int length, int query_dim);
  void InitPyTorchDefault(Rng* rng);

  // out (n x dim, row stride `stride` floats): the pooled history of bags row rows[i], read from
  // `table` (rows x dim), with the query input x.row(i) (x: n x query_dim; ignored when
  // query_dim is 0). Throws Error for a table of another width, a bag row or table row out of
  // range, or a bag longer than length.
  void Infer(const Matrix& table, const data::Bags& bags, const int32_t* rows, int64_t n,
             const Matrix& x, float* out, int64_t stride) const;
  // Training forward: the same, keeping what Backward needs; table, bags, rows and x must outlive
  // Backward.
  void Forward(const Matrix& table, const data::Bags& bags, const int32_t* rows, int64_t n,
               const Matrix& x, float* out, int64_t stride, AttentionContext* ctx);
  // dy (n x dim, stride `stride`): d loss / d out. Adds into the gradients of q_0, W_q and r,
  // adds d loss / d x into dx (n x query_dim; untouched when query_dim is 0) and leaves
  // d loss / d e_j in ctx->dtable.
  void Backward(AttentionContext* ctx, const float* dy, int64_t stride, Matrix* dx);
  // Adds ctx->dtable into the table's gradient (rows recorded in touched_rows).
  static void ScatterTableGradient(const AttentionContext& ctx, Parameter* table);

  std::vector<NamedParameter> NamedParameters(const std::string& prefix);
  std::vector<Parameter*> Parameters();
  Mode mode() const { return mode_; }
  int dim() const { return dim_; }
  int heads() const { return heads_; }
  int length() const { return length_; }
  int query_dim() const { return query_dim_; }
  // "Attention(4 heads, last 50)" / "Mean(last 50)"
  std::string Describe() const;

 private:
  // The pooled vector and attention weights of one example (weights: L x H).
  void PoolOne(const Matrix& table, const int32_t* ids, int64_t len, const float* q, float* out,
               float* weights) const;
  void CheckInputs(const Matrix& table, const data::Bags& bags, const int32_t* rows, int64_t n,
                   const Matrix& x) const;

  Mode mode_ = Mode::kMean;
  int dim_ = 0, heads_ = 1, length_ = 0, query_dim_ = 0;
  Parameter query_, query_proj_, recency_;
};

}  // namespace twotower::nn

#endif  // TWOTOWER_NN_ATTENTION_H_
