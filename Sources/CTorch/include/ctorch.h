// ctorch.h — the plain C surface over LibTorch (mirrors the idea of tch-rs' torch_api.h).
//
// Conventions:
//   * Every function returns 0 on success and non-zero on failure. On failure the message of the
//     C++ exception is stored per thread; read it with tc_last_error() right after the call.
//   * Tensors are opaque handles (an owned at::Tensor*). Every handle a function hands out must
//     be released with tc_free exactly once. Inputs are borrowed.
//   * Optional tensor arguments are NULL when absent. Optional scalars come with a has_* flag.
//   * dtype codes are TC_DTYPE_*; a device is (type, index) with type TC_DEVICE_CPU or _CUDA.
#ifndef CTORCH_H
#define CTORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tc_tensor_s *tc_tensor;
typedef struct tc_generator_s *tc_generator;
typedef struct tc_optimizer_s *tc_optimizer;

enum {
  TC_DTYPE_F32 = 0, TC_DTYPE_F64 = 1, TC_DTYPE_F16 = 2, TC_DTYPE_BF16 = 3,
  TC_DTYPE_I64 = 4, TC_DTYPE_I32 = 5, TC_DTYPE_I16 = 6, TC_DTYPE_I8 = 7,
  TC_DTYPE_U8 = 8, TC_DTYPE_BOOL = 9
};
enum { TC_DEVICE_CPU = 0, TC_DEVICE_CUDA = 1 };

// ---- errors, library, process-wide settings ---------------------------------------------------
const char *tc_last_error(void);
// Version of the headers this shim was compiled against, e.g. "1.13.0".
const char *tc_header_version(void);
// Version of the LibTorch actually loaded (parsed from its build config), "" when unknown.
int tc_runtime_version(char *buf, size_t len);
int tc_cuda_is_available(int *out);
int tc_cuda_device_count(int *out);
int tc_cuda_synchronize(int device);
int tc_set_num_threads(int n);
int tc_get_num_threads(int *out);
int tc_manual_seed(uint64_t seed);
int tc_set_grad_enabled(int enabled, int *previous);
int tc_is_grad_enabled(int *out);
// torch.inference_mode(): enter writes a guard that exit (on the same thread, innermost first) frees.
int tc_inference_mode_enter(void **guard);
int tc_inference_mode_exit(void *guard);
int tc_is_inference_mode_enabled(int *out);
int tc_is_inference_tensor(tc_tensor t, int *out);
// Autocast (torch.autocast) for a device type: enter enables it with the given lower-precision
// dtype (TC_DTYPE_F16/BF16) or disables it (enabled = 0), writing the previous state; exit
// restores that state and clears the cast cache when the outermost autocast region ends.
int tc_autocast_enter(int dev_type, int enabled, int dtype, int *prev_enabled, int *prev_dtype);
int tc_autocast_exit(int dev_type, int prev_enabled, int prev_dtype);
int tc_autocast_is_enabled(int dev_type, int *out);

// ---- lifetime and metadata -------------------------------------------------------------------
void tc_free(tc_tensor t);
int tc_shallow_clone(tc_tensor t, tc_tensor *out);  // same storage, new handle
int tc_defined(tc_tensor t, int *out);
int tc_dim(tc_tensor t, int64_t *out);
int tc_sizes(tc_tensor t, int64_t *out, int64_t capacity);  // writes dim() sizes
int tc_strides(tc_tensor t, int64_t *out, int64_t capacity);
int tc_numel(tc_tensor t, int64_t *out);
int tc_dtype(tc_tensor t, int *out);
int tc_device(tc_tensor t, int *type, int *index);
int tc_is_contiguous(tc_tensor t, int *out);
int tc_to_string(tc_tensor t, char *buf, size_t len);  // at::Tensor printed, truncated to len

// ---- creation ---------------------------------------------------------------------------------
int tc_empty(const int64_t *shape, int ndim, int dtype, int dev_type, int dev_index, tc_tensor *out);
int tc_zeros(const int64_t *shape, int ndim, int dtype, int dev_type, int dev_index, tc_tensor *out);
int tc_ones(const int64_t *shape, int ndim, int dtype, int dev_type, int dev_index, tc_tensor *out);
int tc_full(const int64_t *shape, int ndim, double value, int dtype, int dev_type, int dev_index,
            tc_tensor *out);
int tc_arange(double start, double end, double step, int dtype, int dev_type, int dev_index,
              tc_tensor *out);
int tc_linspace(double start, double end, int64_t steps, int dtype, int dev_type, int dev_index,
                tc_tensor *out);
// gen may be NULL (global default generator).
int tc_rand(const int64_t *shape, int ndim, int dtype, tc_generator gen, int dev_type,
            int dev_index, tc_tensor *out);
int tc_randn(const int64_t *shape, int ndim, int dtype, tc_generator gen, int dev_type,
             int dev_index, tc_tensor *out);
int tc_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, int dtype,
               tc_generator gen, int dev_type, int dev_index, tc_tensor *out);
int tc_randperm(int64_t n, tc_generator gen, tc_tensor *out);
// Copies nbytes from data (must equal numel * element size) into a new CPU tensor.
int tc_from_data(const void *data, size_t nbytes, const int64_t *shape, int ndim, int dtype,
                 tc_tensor *out);
// Copies the tensor's values (converted to contiguous CPU, same dtype) into dst.
int tc_copy_to_buffer(tc_tensor t, void *dst, size_t nbytes);
// Pointer to the data of a contiguous CPU tensor (for reading files straight into storage).
int tc_data_ptr(tc_tensor t, void **out);
int tc_item_double(tc_tensor t, double *out);
int tc_item_int64(tc_tensor t, int64_t *out);

// ---- in-place (used for loading, init, EMA) -----------------------------------------------------
int tc_copy_(tc_tensor dst, tc_tensor src);
int tc_fill_(tc_tensor t, double value);
int tc_zero_(tc_tensor t);
int tc_uniform_(tc_tensor t, double from, double to, tc_generator gen);
int tc_normal_(tc_tensor t, double mean, double std, tc_generator gen);
int tc_add_scaled_(tc_tensor t, tc_tensor other, double alpha);  // t += alpha * other
int tc_mul_scalar_(tc_tensor t, double s);
// t = t * w + other * (1 - w)   (EMA's lerp: t.lerp_(other, 1 - w))
int tc_lerp_(tc_tensor t, tc_tensor other, double weight);
// t.set_data(src): new storage/dtype/device, same autograd identity (what Module.to() does).
int tc_set_data(tc_tensor t, tc_tensor src);

// ---- conversion -------------------------------------------------------------------------------
// dtype < 0 keeps dtype; dev_type < 0 keeps device.
int tc_to(tc_tensor t, int dtype, int dev_type, int dev_index, int copy, tc_tensor *out);
int tc_clone(tc_tensor t, tc_tensor *out);
int tc_detach(tc_tensor t, tc_tensor *out);
int tc_contiguous(tc_tensor t, tc_tensor *out);

// ---- shape ------------------------------------------------------------------------------------
int tc_reshape(tc_tensor t, const int64_t *shape, int ndim, tc_tensor *out);
int tc_view(tc_tensor t, const int64_t *shape, int ndim, tc_tensor *out);
int tc_permute(tc_tensor t, const int64_t *dims, int ndim, tc_tensor *out);
int tc_transpose(tc_tensor t, int64_t d0, int64_t d1, tc_tensor *out);
int tc_squeeze(tc_tensor t, int64_t dim, int all, tc_tensor *out);
int tc_unsqueeze(tc_tensor t, int64_t dim, tc_tensor *out);
int tc_flatten(tc_tensor t, int64_t start, int64_t end, tc_tensor *out);
int tc_expand(tc_tensor t, const int64_t *shape, int ndim, tc_tensor *out);
int tc_repeat(tc_tensor t, const int64_t *repeats, int ndim, tc_tensor *out);
int tc_repeat_interleave(tc_tensor t, int64_t repeats, int64_t dim, tc_tensor *out);
int tc_cat(const tc_tensor *ts, int n, int64_t dim, tc_tensor *out);
int tc_stack(const tc_tensor *ts, int n, int64_t dim, tc_tensor *out);
// Writes up to capacity handles; *count receives the number of pieces.
int tc_chunk(tc_tensor t, int64_t chunks, int64_t dim, tc_tensor *outs, int capacity, int *count);
int tc_split(tc_tensor t, const int64_t *sizes, int n, int64_t dim, tc_tensor *outs);
int tc_narrow(tc_tensor t, int64_t dim, int64_t start, int64_t length, tc_tensor *out);
int tc_slice(tc_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, tc_tensor *out);
int tc_select(tc_tensor t, int64_t dim, int64_t index, tc_tensor *out);
int tc_index_select(tc_tensor t, int64_t dim, tc_tensor index, tc_tensor *out);
int tc_gather(tc_tensor t, int64_t dim, tc_tensor index, tc_tensor *out);
int tc_flip(tc_tensor t, const int64_t *dims, int ndim, tc_tensor *out);
// mode: 0 constant, 1 reflect, 2 replicate. pad as in F.pad (last dim first).
int tc_pad(tc_tensor t, const int64_t *pad, int npad, int mode, double value, tc_tensor *out);
int tc_masked_fill(tc_tensor t, tc_tensor mask, double value, tc_tensor *out);
int tc_where(tc_tensor cond, tc_tensor a, tc_tensor b, tc_tensor *out);
int tc_tril(tc_tensor t, int64_t diagonal, tc_tensor *out);

// ---- elementwise math ---------------------------------------------------------------------------
enum {
  TC_U_NEG = 0, TC_U_ABS, TC_U_SQRT, TC_U_RSQRT, TC_U_EXP, TC_U_LOG, TC_U_SIN, TC_U_COS,
  TC_U_FLOOR, TC_U_CEIL, TC_U_ROUND, TC_U_TRUNC, TC_U_SIGN, TC_U_RECIPROCAL, TC_U_SQUARE,
  TC_U_SIGMOID, TC_U_TANH, TC_U_RELU, TC_U_SILU, TC_U_GELU, TC_U_GELU_TANH, TC_U_QUICK_GELU,
  TC_U_SOFTPLUS, TC_U_ERF, TC_U_LOG1P, TC_U_EXPM1, TC_U_LOGICAL_NOT, TC_U_ISNAN, TC_U_ISFINITE,
  TC_U_LOGSIGMOID
};
int tc_unary(int op, tc_tensor a, tc_tensor *out);
enum {
  TC_B_ADD = 0, TC_B_SUB, TC_B_MUL, TC_B_DIV, TC_B_POW, TC_B_EQ, TC_B_NE, TC_B_LT, TC_B_LE,
  TC_B_GT, TC_B_GE, TC_B_MAXIMUM, TC_B_MINIMUM, TC_B_LOGICAL_AND, TC_B_LOGICAL_OR,
  TC_B_REMAINDER, TC_B_FLOOR_DIVIDE, TC_B_ATAN2
};
int tc_binary(int op, tc_tensor a, tc_tensor b, tc_tensor *out);
// reverse != 0 computes (s op a) instead of (a op s).
int tc_binary_scalar(int op, tc_tensor a, double s, int reverse, tc_tensor *out);
int tc_clamp(tc_tensor t, int has_min, double min, int has_max, double max, tc_tensor *out);
int tc_leaky_relu(tc_tensor t, double slope, tc_tensor *out);
int tc_matmul(tc_tensor a, tc_tensor b, tc_tensor *out);
int tc_bmm(tc_tensor a, tc_tensor b, tc_tensor *out);
// beta * input + alpha * (b1 @ b2)
int tc_baddbmm(tc_tensor input, tc_tensor b1, tc_tensor b2, double beta, double alpha,
               tc_tensor *out);

// ---- reductions ---------------------------------------------------------------------------------
enum {
  TC_R_SUM = 0, TC_R_MEAN, TC_R_AMAX, TC_R_AMIN, TC_R_PROD, TC_R_ANY, TC_R_ALL, TC_R_LOGSUMEXP
};
// ndims == 0 reduces over all dimensions.
int tc_reduce(int op, tc_tensor t, const int64_t *dims, int ndims, int keepdim, tc_tensor *out);
// std when is_std != 0; correction as in torch (1 = unbiased).
int tc_var(tc_tensor t, const int64_t *dims, int ndims, int64_t correction, int keepdim, int is_std,
           tc_tensor *out);
// is_min selects min. values and indices are returned.
int tc_max_dim(tc_tensor t, int64_t dim, int keepdim, int is_min, tc_tensor *values,
               tc_tensor *indices);
int tc_argmax(tc_tensor t, int64_t dim, int has_dim, int keepdim, int is_min, tc_tensor *out);
int tc_norm(tc_tensor t, double p, const int64_t *dims, int ndims, int keepdim, tc_tensor *out);
int tc_softmax(tc_tensor t, int64_t dim, int log, tc_tensor *out);
int tc_cumsum(tc_tensor t, int64_t dim, tc_tensor *out);
// Sorted values and their indices along dim (stable).
int tc_sort(tc_tensor t, int64_t dim, int descending, tc_tensor *values, tc_tensor *indices);
int tc_allclose(tc_tensor a, tc_tensor b, double rtol, double atol, int *out);

// ---- neural-network functional ------------------------------------------------------------------
int tc_linear(tc_tensor x, tc_tensor w, tc_tensor b, tc_tensor *out);
int tc_conv2d(tc_tensor x, tc_tensor w, tc_tensor b, const int64_t *stride, const int64_t *padding,
              const int64_t *dilation, int64_t groups, tc_tensor *out);
int tc_conv_transpose2d(tc_tensor x, tc_tensor w, tc_tensor b, const int64_t *stride,
                        const int64_t *padding, const int64_t *output_padding, int64_t groups,
                        const int64_t *dilation, tc_tensor *out);
int tc_group_norm(tc_tensor x, int64_t groups, tc_tensor w, tc_tensor b, double eps, tc_tensor *out);
int tc_layer_norm(tc_tensor x, const int64_t *shape, int ndim, tc_tensor w, tc_tensor b, double eps,
                  tc_tensor *out);
// In training mode running stats (if given) are updated in place.
int tc_batch_norm(tc_tensor x, tc_tensor w, tc_tensor b, tc_tensor running_mean,
                  tc_tensor running_var, int training, double momentum, double eps, tc_tensor *out);
int tc_dropout(tc_tensor x, double p, int training, tc_tensor *out);
// mode: 0 nearest, 1 bilinear, 2 bicubic, 3 nearest-exact, 4 area. Either size (2) or scale (2).
int tc_interpolate(tc_tensor x, const int64_t *size, const double *scale, int mode,
                   int align_corners, int antialias, tc_tensor *out);
int tc_avg_pool2d(tc_tensor x, const int64_t *kernel, const int64_t *stride,
                  const int64_t *padding, int ceil_mode, int count_include_pad, tc_tensor *out);
int tc_max_pool2d(tc_tensor x, const int64_t *kernel, const int64_t *stride,
                  const int64_t *padding, int ceil_mode, tc_tensor *out);
int tc_adaptive_avg_pool2d(tc_tensor x, const int64_t *size, tc_tensor *out);
int tc_embedding(tc_tensor weight, tc_tensor indices, tc_tensor *out);
// reduction: 0 none, 1 mean, 2 sum
int tc_mse_loss(tc_tensor a, tc_tensor b, int reduction, tc_tensor *out);
int tc_l1_loss(tc_tensor a, tc_tensor b, int reduction, tc_tensor *out);
int tc_smooth_l1_loss(tc_tensor a, tc_tensor b, int reduction, double beta, tc_tensor *out);
// target holds class indices (int64) or probabilities (same shape as logits).
int tc_cross_entropy(tc_tensor logits, tc_tensor target, int reduction, double label_smoothing,
                     tc_tensor *out);
// softmax(q kᵀ · scale + mask) v over (..., L, E) tensors; uses the fused kernel when available.
// mask may be NULL (bool masks: true = keep; float masks are added).
int tc_attention(tc_tensor q, tc_tensor k, tc_tensor v, tc_tensor mask, double scale,
                 int is_causal, tc_tensor *out);

// ---- autograd -----------------------------------------------------------------------------------
int tc_requires_grad(tc_tensor t, int *out);
int tc_set_requires_grad(tc_tensor t, int requires_grad);
int tc_is_leaf(tc_tensor t, int *out);
// grad may be NULL for scalar outputs.
int tc_backward(tc_tensor t, tc_tensor grad, int retain_graph, int create_graph);
// *out is NULL when the tensor has no gradient.
int tc_grad(tc_tensor t, tc_tensor *out);
int tc_set_grad(tc_tensor t, tc_tensor grad);  // grad NULL sets it to None
int tc_zero_grad(tc_tensor t);                 // zeroes in place if present
// torch::autograd::grad. grad_outputs may be NULL. outs receives n_inputs handles (NULL for
// inputs that do not affect the outputs when allow_unused).
int tc_autograd_grad(const tc_tensor *outputs, int n_outputs, const tc_tensor *inputs, int n_inputs,
                     const tc_tensor *grad_outputs, int retain_graph, int create_graph,
                     int allow_unused, tc_tensor *outs);
// Scales the gradients so that their total norm is <= max_norm; returns the norm before.
int tc_clip_grad_norm(const tc_tensor *params, int n, double max_norm, double norm_type,
                      double *total_norm);

// ---- random generators --------------------------------------------------------------------------
int tc_generator_new(uint64_t seed, int dev_type, int dev_index, tc_generator *out);
void tc_generator_free(tc_generator g);
int tc_generator_set_seed(tc_generator g, uint64_t seed);
int tc_generator_get_state(tc_generator g, tc_tensor *out);  // uint8 tensor
int tc_generator_set_state(tc_generator g, tc_tensor state);
// The global CPU generator (NULL generator arguments use it).
int tc_default_generator_get_state(tc_tensor *out);
int tc_default_generator_set_state(tc_tensor state);

// ---- optimizer: AdamW with parameter groups ------------------------------------------------------
// params[i] belongs to group group_of[i]; each group has its own lr and weight decay.
int tc_adamw_new(const tc_tensor *params, const int *group_of, int n_params, const double *lrs,
                 const double *weight_decays, int n_groups, double beta1, double beta2, double eps,
                 int amsgrad, tc_optimizer *out);
void tc_optimizer_free(tc_optimizer o);
// Step with the fused AdamW kernel (aten::_fused_adamw_) where the LibTorch has it (2.4+, not amsgrad).
int tc_adamw_set_fused(tc_optimizer o, int fused);
int tc_optimizer_step(tc_optimizer o);
int tc_optimizer_zero_grad(tc_optimizer o, int set_to_none);
int tc_optimizer_set_lr(tc_optimizer o, int group, double lr);
int tc_optimizer_get_lr(tc_optimizer o, int group, double *out);
// State of parameter i (global index in creation order). *has_state = 0 before the first step.
int tc_adamw_get_state(tc_optimizer o, int param_index, int *has_state, int64_t *step,
                       tc_tensor *exp_avg, tc_tensor *exp_avg_sq, tc_tensor *max_exp_avg_sq);
// max_exp_avg_sq may be NULL when amsgrad is off.
int tc_adamw_set_state(tc_optimizer o, int param_index, int64_t step, tc_tensor exp_avg,
                       tc_tensor exp_avg_sq, tc_tensor max_exp_avg_sq);

// ---- serialization (PyTorch .pth) ---------------------------------------------------------------
// Loads a torch.save() file holding a dict of tensors (possibly nested dicts, e.g. under
// "state_dict"). Nested keys are joined with '.'. Non-tensor leaves are refused with an error
// naming their key. Release with tc_named_tensors_free.
typedef struct {
  int64_t count;
  char **names;
  tc_tensor *tensors;
} tc_named_tensors;
int tc_pth_load(const char *path, tc_named_tensors *out);
void tc_named_tensors_free(tc_named_tensors *list);
// Writes a dict name -> tensor in torch.save's zip format (loadable by torch.load).
int tc_pth_save(const char *path, const char *const *names, const tc_tensor *tensors, int64_t n);


// ---- distributed (c10d): rendezvous store, process groups, collectives -------------------------
// A TCPStore (rank 0 serves it, every rank connects to host:port), the rendezvous of
// torch.distributed's env:// init. Every call gives up after timeout_ms with an error.
typedef struct tc_store_s *tc_store;
typedef struct tc_process_group_s *tc_process_group;
typedef struct tc_heartbeat_s *tc_heartbeat;
enum { TC_PG_GLOO = 0, TC_PG_NCCL = 1 };
// Whether this build can create the backend (Gloo needs the gloo headers at build time, NCCL a CUDA build).
int tc_distributed_backend_available(int backend, int *out);
int tc_tcp_store_create(const char *host, int port, int is_server, int world_size, int64_t timeout_ms, tc_store *out);
void tc_store_free(tc_store s);
int tc_store_set(tc_store s, const char *key, const uint8_t *data, int64_t len);
// Blocks until the key exists (or the store's timeout); *data is released with tc_buffer_free.
int tc_store_get(tc_store s, const char *key, uint8_t **data, int64_t *len);
void tc_buffer_free(uint8_t *p);
int tc_store_add(tc_store s, const char *key, int64_t delta, int64_t *out);
int tc_store_check(tc_store s, const char *key, int *out);
// A background thread adding 1 to `key` every interval_ms over its own store connection (liveness
// for naming a dead rank); stops silently when the store goes away. tc_heartbeat_stop joins it.
int tc_heartbeat_start(const char *host, int port, const char *key, int64_t interval_ms, int64_t timeout_ms,
                       tc_heartbeat *out);
void tc_heartbeat_stop(tc_heartbeat hb);
// gloo_hostname: the address Gloo binds and advertises (NULL or "" = the host name's address).
int tc_process_group_create(tc_store s, int backend, int rank, int world_size, int64_t timeout_ms,
                            const char *gloo_hostname, tc_process_group *out);
void tc_process_group_free(tc_process_group pg);
// In place: every tensor becomes the mean over ranks. Tensors go in buckets of at most
// bucket_bytes (<= 0: 25 MiB), each flattened into one all-reduce.
int tc_pg_allreduce_mean(tc_process_group pg, tc_tensor *tensors, int n, int64_t bucket_bytes, int64_t timeout_ms);
// In place: every tensor becomes root's value (bucketed likewise).
// Differentiable sum over the ranks (forward and backward both all-reduce), for SyncBatchNorm.
int tc_pg_allreduce_sum_autograd(tc_process_group pg, tc_tensor t, int64_t timeout_ms, tc_tensor *out);
int tc_pg_broadcast(tc_process_group pg, tc_tensor *tensors, int n, int root, int64_t bucket_bytes, int64_t timeout_ms);
int tc_pg_barrier(tc_process_group pg, int64_t timeout_ms);

// ---- profiling (ctorch_profile.cpp) ----
typedef struct tc_profile_s *tc_profile;
// A Chrome trace of every op until tc_profile_end, which writes it to the path.
int tc_profile_begin(const char *chrome_trace_path, tc_profile *out);
int tc_profile_end(tc_profile p);
// Counts the calling thread's operator calls and autograd backward nodes by name until tc_op_count_end,
// which returns "name\tcount\n" lines in a buffer released with tc_buffer_free.
int tc_op_count_begin(void);
int tc_op_count_end(uint8_t **text, int64_t *len);

#ifdef __cplusplus
}
#endif
#endif
