// Bidirectional LSTM sweep recurrences for `crnn_keras.layers.fused_lstm` (CPU, float32).
// Built on first use by `crnn_keras.layers.native`. Each direction's sequences are split into
// chunks that run their whole recurrence as one task on TensorFlow's intra-op pool: one small
// matmul and one pass of elementwise work per step, no per-step op dispatch.
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"
#include <Eigen/Dense>

using namespace tensorflow;
using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMapS = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
using MapS = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
using CMap = Eigen::Map<const Mat>;
using Map = Eigen::Map<Mat>;

// Runs `fn(direction, first_row, rows)` for every chunk of each direction's n sequences, as
// tasks on TensorFlow's intra-op pool. The attr `chunks` (0: the pool's thread count) sets
// the chunks per direction.
class ChunkedOp : public OpKernel {
 public:
  explicit ChunkedOp(OpKernelConstruction* c) : OpKernel(c) { OP_REQUIRES_OK(c, c->GetAttr("chunks", &chunks_)); }

 protected:
  template <typename Fn>
  void ForChunks(OpKernelContext* ctx, int64 n, Fn fn) const {
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    const int64 per_dir = std::max<int64>(1, std::min(chunks_ > 0 ? chunks_ : pool->NumThreads(), n));
    const int64 rows = (n + per_dir - 1) / per_dir;
    pool->ParallelFor(2 * per_dir, /*cost_per_unit=*/1000000000, [&](int64 begin, int64 end) {
      for (int64 task = begin; task < end; ++task) {
        const int64 r0 = (task / 2) * rows, m = std::min(rows, n - r0);
        if (m > 0) fn(static_cast<int>(task % 2), r0, m);
      }
    });
  }

 private:
  int64 chunks_;
};

REGISTER_OP("CrnnLstmForward")
    .Input("proj: float")   // [steps, n, 8u]: both directions' input projections (bias added)
    .Input("rec_f: float")  // [u, 4u]
    .Input("rec_b: float")
    .Attr("chunks: int = 0")
    .Output("hs: float")     // [2, steps, n, u]
    .Output("acts: float")   // [2, steps, n, 4u]
    .Output("cells: float")  // [2, steps, n, u]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle p, r;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &p));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 2, &r));
      auto u = c->Dim(r, 0), g = c->Dim(r, 1);
      auto steps = c->Dim(p, 0), n = c->Dim(p, 1);
      c->set_output(0, c->MakeShape({2, steps, n, u}));
      c->set_output(1, c->MakeShape({2, steps, n, g}));
      c->set_output(2, c->MakeShape({2, steps, n, u}));
      return absl::OkStatus();
    });

class CrnnLstmForwardOp : public ChunkedOp {
 public:
  explicit CrnnLstmForwardOp(OpKernelConstruction* c) : ChunkedOp(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& proj = ctx->input(0);
    OP_REQUIRES(ctx, proj.dims() == 3 && proj.dim_size(2) % 8 == 0,
                errors::InvalidArgument("proj must be [steps, n, 8 * units]; got ", proj.shape().DebugString()));
    const int64 steps = proj.dim_size(0), n = proj.dim_size(1), g8 = proj.dim_size(2), u = g8 / 8;
    for (int k = 1; k <= 2; ++k)
      OP_REQUIRES(ctx, ctx->input(k).shape() == TensorShape({u, 4 * u}),
                  errors::InvalidArgument("recurrent kernels must be [", u, ", ", 4 * u, "]; got ",
                                          ctx->input(k).shape().DebugString()));
    Tensor *hs, *acts, *cells;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({2, steps, n, u}), &hs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({2, steps, n, 4 * u}), &acts));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({2, steps, n, u}), &cells));
    const float* P = proj.flat<float>().data();
    const float* R[2] = {ctx->input(1).flat<float>().data(), ctx->input(2).flat<float>().data()};
    float* H = hs->flat<float>().data(); float* A = acts->flat<float>().data(); float* C = cells->flat<float>().data();
    ForChunks(ctx, n, [&](int d, int64 r0, int64 m) {
      CMap U(R[d], u, 4 * u);
      Mat z(m, 4 * u), h = Mat::Zero(m, u), c = Mat::Zero(m, u);
      for (int64 k = 0; k < steps; ++k) {
        const int64 t = d == 0 ? k : steps - 1 - k;
        CMapS p(P + (t * n + r0) * g8 + d * 4 * u, m, 4 * u, Eigen::OuterStride<>(g8));
        z.noalias() = h * U;
        z += p;
        Map a(A + ((d * steps + t) * n + r0) * 4 * u, m, 4 * u);
        a.leftCols(2 * u).array() = z.leftCols(2 * u).array().logistic();
        a.middleCols(2 * u, u).array() = z.middleCols(2 * u, u).array().tanh();
        a.rightCols(u).array() = z.rightCols(u).array().logistic();
        c.array() = a.middleCols(u, u).array() * c.array() + a.leftCols(u).array() * a.middleCols(2 * u, u).array();
        h.array() = a.rightCols(u).array() * c.array().tanh();
        Map(C + ((d * steps + t) * n + r0) * u, m, u) = c;
        Map(H + ((d * steps + t) * n + r0) * u, m, u) = h;
      }
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("CrnnLstmForward").Device(DEVICE_CPU), CrnnLstmForwardOp);

REGISTER_OP("CrnnLstmBackward")
    .Input("dy: float")     // [steps, n, 2u]
    .Input("acts: float")   // [2, steps, n, 4u]
    .Input("cells: float")  // [2, steps, n, u]
    .Input("rec_f: float")
    .Input("rec_b: float")
    .Attr("chunks: int = 0")
    .Output("dz: float")    // [2, steps, n, 4u]: gate pre-activation gradients
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      shape_inference::ShapeHandle dy, acts;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &dy));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &acts));
      c->set_output(0, acts);
      return absl::OkStatus();
    });

class CrnnLstmBackwardOp : public ChunkedOp {
 public:
  explicit CrnnLstmBackwardOp(OpKernelConstruction* c) : ChunkedOp(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    OP_REQUIRES(ctx, dy.dims() == 3 && dy.dim_size(2) % 2 == 0,
                errors::InvalidArgument("dy must be [steps, n, 2 * units]; got ", dy.shape().DebugString()));
    const int64 steps = dy.dim_size(0), n = dy.dim_size(1), u = dy.dim_size(2) / 2;
    OP_REQUIRES(ctx, ctx->input(1).shape() == TensorShape({2, steps, n, 4 * u}) &&
                     ctx->input(2).shape() == TensorShape({2, steps, n, u}) &&
                     ctx->input(3).shape() == TensorShape({u, 4 * u}) && ctx->input(4).shape() == TensorShape({u, 4 * u}),
                errors::InvalidArgument("acts, cells and recurrent kernels do not match dy ", dy.shape().DebugString()));
    Tensor* dz;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({2, steps, n, 4 * u}), &dz));
    const float* DY = dy.flat<float>().data();
    const float* A = ctx->input(1).flat<float>().data();
    const float* C = ctx->input(2).flat<float>().data();
    const float* R[2] = {ctx->input(3).flat<float>().data(), ctx->input(4).flat<float>().data()};
    float* DZ = dz->flat<float>().data();
    ForChunks(ctx, n, [&](int d, int64 r0, int64 m) {
      CMap U(R[d], u, 4 * u);
      Mat dh(m, u), dc(m, u), tc(m, u), dh_next = Mat::Zero(m, u), dc_next = Mat::Zero(m, u), zero = Mat::Zero(m, u);
      for (int64 k = 0; k < steps; ++k) {
        const int64 t = d == 0 ? steps - 1 - k : k, prev = d == 0 ? t - 1 : t + 1;
        CMap a(A + ((d * steps + t) * n + r0) * 4 * u, m, 4 * u);
        CMap c(C + ((d * steps + t) * n + r0) * u, m, u);
        const bool has_prev = prev >= 0 && prev < steps;
        CMap cp(has_prev ? C + ((d * steps + prev) * n + r0) * u : zero.data(), m, u);
        CMapS dyt(DY + (t * n + r0) * 2 * u + d * u, m, u, Eigen::OuterStride<>(2 * u));
        auto i = a.leftCols(u).array(); auto f = a.middleCols(u, u).array();
        auto g = a.middleCols(2 * u, u).array(); auto o = a.rightCols(u).array();
        tc.array() = c.array().tanh();
        dh.array() = dyt.array() + dh_next.array();
        dc.array() = dc_next.array() + dh.array() * o * (1.0f - tc.array() * tc.array());
        Map z(DZ + ((d * steps + t) * n + r0) * 4 * u, m, 4 * u);
        z.leftCols(u).array() = dc.array() * g * i * (1.0f - i);
        z.middleCols(u, u).array() = dc.array() * cp.array() * f * (1.0f - f);
        z.middleCols(2 * u, u).array() = dc.array() * i * (1.0f - g * g);
        z.rightCols(u).array() = dh.array() * tc.array() * o * (1.0f - o);
        dc_next.array() = dc.array() * f;
        dh_next.noalias() = z * U.transpose();
      }
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("CrnnLstmBackward").Device(DEVICE_CPU), CrnnLstmBackwardOp);
