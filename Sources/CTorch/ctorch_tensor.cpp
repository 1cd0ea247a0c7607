// ctorch_tensor.cpp — tensors: library info, creation, shape, math, reductions (ATen only, so this
// file stays cheap to compile; the torch C++ frontend lives in ctorch_nn.cpp).
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/api/include/torch/version.h>

#include <cstring>
#include <regex>

#include "ctorch_internal.h"

using namespace ctorch;

namespace ctorch {
static thread_local std::string last_error;
void set_error(const std::string &msg) { last_error = msg; }

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case TC_DTYPE_F32: return at::kFloat;
    case TC_DTYPE_F64: return at::kDouble;
    case TC_DTYPE_F16: return at::kHalf;
    case TC_DTYPE_BF16: return at::kBFloat16;
    case TC_DTYPE_I64: return at::kLong;
    case TC_DTYPE_I32: return at::kInt;
    case TC_DTYPE_I16: return at::kShort;
    case TC_DTYPE_I8: return at::kChar;
    case TC_DTYPE_U8: return at::kByte;
    case TC_DTYPE_BOOL: return at::kBool;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int dtype_code(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return TC_DTYPE_F32;
    case at::kDouble: return TC_DTYPE_F64;
    case at::kHalf: return TC_DTYPE_F16;
    case at::kBFloat16: return TC_DTYPE_BF16;
    case at::kLong: return TC_DTYPE_I64;
    case at::kInt: return TC_DTYPE_I32;
    case at::kShort: return TC_DTYPE_I16;
    case at::kChar: return TC_DTYPE_I8;
    case at::kByte: return TC_DTYPE_U8;
    case at::kBool: return TC_DTYPE_BOOL;
    default: break;
  }
  throw std::invalid_argument(std::string("unsupported dtype ") + c10::toString(st));
}

at::Device device(int type, int index) {
  if (type == TC_DEVICE_CPU) return at::Device(at::kCPU);
  if (type == TC_DEVICE_CUDA) return at::Device(at::kCUDA, (c10::DeviceIndex)index);
  throw std::invalid_argument("unknown device type " + std::to_string(type));
}

at::TensorOptions options(int dtype, int dev_type, int dev_index) {
  return at::TensorOptions().dtype(scalar_type(dtype)).device(device(dev_type, dev_index));
}

c10::optional<at::Generator> generator(tc_generator g) {
  if (!g) return c10::nullopt;
  return g->gen;
}
}  // namespace ctorch

// Random draws use the generator's device. A CPU generator asked for CUDA values draws on the CPU
// and copies, so a seed gives the same numbers on every device.
static at::Tensor draw(const std::function<at::Tensor(const at::TensorOptions &)> &f, int dtype,
                       tc_generator gen, int dev_type, int dev_index) {
  auto target = options(dtype, dev_type, dev_index);
  if (gen && gen->gen.device().type() != target.device().type()) {
    return f(target.device(gen->gen.device())).to(target.device());
  }
  return f(target);
}

extern "C" {

const char *tc_last_error(void) { return last_error.c_str(); }

const char *tc_header_version(void) {
  static std::string v = std::to_string(TORCH_VERSION_MAJOR) + "." +
                         std::to_string(TORCH_VERSION_MINOR) + "." +
                         std::to_string(TORCH_VERSION_PATCH);
  return v.c_str();
}

int tc_runtime_version(char *buf, size_t len) {
  TC_TRY
  std::string version;
  // Official builds record TORCH_VERSION in their build configuration.
  std::string config = at::show_config();
  std::smatch m;
  if (std::regex_search(config, m, std::regex("TORCH_VERSION=([0-9]+\\.[0-9]+\\.[0-9]+)"))) {
    version = m[1];
  } else {
    // Distribution builds (Debian) do not; their shared object carries the version in its name.
    Dl_info info;
    if (dladdr(reinterpret_cast<void *>(&at::show_config), &info) && info.dli_fname) {
      char real[PATH_MAX];
      std::string path = realpath(info.dli_fname, real) ? real : info.dli_fname;
      if (std::regex_search(path, m, std::regex("\\.so\\.([0-9]+\\.[0-9]+\\.[0-9]+)$"))) version = m[1];
    }
  }
  snprintf(buf, len, "%s", version.c_str());
  TC_CATCH
}

int tc_cuda_is_available(int *out) {
  TC_TRY *out = at::hasCUDA() ? 1 : 0;
  TC_CATCH
}
int tc_cuda_device_count(int *out) {
  TC_TRY *out = at::hasCUDA() ? (int)at::detail::getCUDAHooks().getNumGPUs() : 0;
  TC_CATCH
}
int tc_cuda_synchronize(int device) {
  TC_TRY
  if (at::hasCUDA()) at::detail::getCUDAHooks().deviceSynchronize((int64_t)device);
  TC_CATCH
}
int tc_set_num_threads(int n) {
  TC_TRY at::set_num_threads(n);
  TC_CATCH
}
int tc_get_num_threads(int *out) {
  TC_TRY *out = at::get_num_threads();
  TC_CATCH
}
int tc_manual_seed(uint64_t seed) {
  TC_TRY
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_current_seed(seed);
  TC_CATCH
}
int tc_set_grad_enabled(int enabled, int *previous) {
  TC_TRY
  if (previous) *previous = at::GradMode::is_enabled() ? 1 : 0;
  at::GradMode::set_enabled(enabled != 0);
  TC_CATCH
}
// torch.inference_mode: a c10::InferenceMode guard on the heap, so Swift can scope it; guards are
// thread-local RAII state and must be exited in reverse order of entry, on the entering thread.
int tc_inference_mode_enter(void **guard) {
  TC_TRY
  *guard = new c10::InferenceMode(true);
  TC_CATCH
}
int tc_inference_mode_exit(void *guard) {
  TC_TRY
  delete static_cast<c10::InferenceMode *>(guard);
  TC_CATCH
}
int tc_is_inference_mode_enabled(int *out) {
  TC_TRY *out = c10::InferenceMode::is_enabled() ? 1 : 0;
  TC_CATCH
}
int tc_is_inference_tensor(tc_tensor t, int *out) {
  TC_TRY *out = T(t).is_inference() ? 1 : 0;
  TC_CATCH
}
// Autocast state per device type. 2.4 replaced the per-device functions (set_enabled for CUDA,
// set_cpu_enabled, ...) with ones taking the device type.
static at::DeviceType autocast_device(int dev_type) {
  if (dev_type == TC_DEVICE_CUDA) return at::kCUDA;
  if (dev_type == TC_DEVICE_CPU) return at::kCPU;
  throw std::invalid_argument("autocast: unknown device type " + std::to_string(dev_type));
}
static bool autocast_enabled(at::DeviceType d) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::is_autocast_enabled(d);
#else
  return d == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}
static at::ScalarType autocast_dtype(at::DeviceType d) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return at::autocast::get_autocast_dtype(d);
#else
  return d == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}
static void set_autocast(at::DeviceType d, bool enabled, at::ScalarType dtype) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  at::autocast::set_autocast_enabled(d, enabled);
  at::autocast::set_autocast_dtype(d, dtype);
#else
  if (d == at::kCUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}
int tc_autocast_enter(int dev_type, int enabled, int dtype, int *prev_enabled, int *prev_dtype) {
  TC_TRY
  auto d = autocast_device(dev_type);
  auto st = scalar_type(dtype);
  if (enabled && st != at::kHalf && st != at::kBFloat16)
    throw std::invalid_argument("autocast: the lower-precision dtype must be float16 or bfloat16");
  if (enabled && d == at::kCPU && st == at::kHalf && TORCH_VERSION_MAJOR < 2)
    throw std::invalid_argument("autocast: this LibTorch supports only bfloat16 autocast on the CPU");
  *prev_enabled = autocast_enabled(d) ? 1 : 0;
  *prev_dtype = ctorch::dtype_code(autocast_dtype(d));
  set_autocast(d, enabled != 0, enabled ? st : autocast_dtype(d));
  at::autocast::increment_nesting();
  TC_CATCH
}
int tc_autocast_exit(int dev_type, int prev_enabled, int prev_dtype) {
  TC_TRY
  auto d = autocast_device(dev_type);
  // Like torch.autocast.__exit__: the cache of casted weights lives for the outermost region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast(d, prev_enabled != 0, prev_dtype >= 0 ? scalar_type(prev_dtype) : autocast_dtype(d));
  TC_CATCH
}
int tc_autocast_is_enabled(int dev_type, int *out) {
  TC_TRY *out = autocast_enabled(autocast_device(dev_type)) ? 1 : 0;
  TC_CATCH
}
int tc_is_grad_enabled(int *out) {
  TC_TRY *out = at::GradMode::is_enabled() ? 1 : 0;
  TC_CATCH
}

// ---- lifetime and metadata ----
void tc_free(tc_tensor t) { delete reinterpret_cast<at::Tensor *>(t); }
int tc_shallow_clone(tc_tensor t, tc_tensor *out) {
  TC_TRY *out = wrap(T(t));
  TC_CATCH
}
int tc_defined(tc_tensor t, int *out) {
  TC_TRY *out = T(t).defined() ? 1 : 0;
  TC_CATCH
}
int tc_dim(tc_tensor t, int64_t *out) {
  TC_TRY *out = T(t).dim();
  TC_CATCH
}
int tc_sizes(tc_tensor t, int64_t *out, int64_t capacity) {
  TC_TRY
  auto s = T(t).sizes();
  if ((int64_t)s.size() > capacity) throw std::invalid_argument("tc_sizes: capacity too small");
  for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
  TC_CATCH
}
int tc_strides(tc_tensor t, int64_t *out, int64_t capacity) {
  TC_TRY
  auto s = T(t).strides();
  if ((int64_t)s.size() > capacity) throw std::invalid_argument("tc_strides: capacity too small");
  for (size_t i = 0; i < s.size(); i++) out[i] = s[i];
  TC_CATCH
}
int tc_numel(tc_tensor t, int64_t *out) {
  TC_TRY *out = T(t).numel();
  TC_CATCH
}
int tc_dtype(tc_tensor t, int *out) {
  TC_TRY *out = dtype_code(T(t).scalar_type());
  TC_CATCH
}
int tc_device(tc_tensor t, int *type, int *index) {
  TC_TRY
  auto d = T(t).device();
  *type = d.is_cuda() ? TC_DEVICE_CUDA : TC_DEVICE_CPU;
  *index = d.has_index() ? d.index() : 0;
  TC_CATCH
}
int tc_is_contiguous(tc_tensor t, int *out) {
  TC_TRY *out = T(t).is_contiguous() ? 1 : 0;
  TC_CATCH
}
int tc_to_string(tc_tensor t, char *buf, size_t len) {
  TC_TRY
  std::ostringstream s;
  s << T(t);
  snprintf(buf, len, "%s", s.str().c_str());
  TC_CATCH
}

// ---- creation ----
int tc_empty(const int64_t *shape, int ndim, int dtype, int dt, int di, tc_tensor *out) {
  TC_TRY *out = wrap(at::empty(dims(shape, ndim), options(dtype, dt, di)));
  TC_CATCH
}
int tc_zeros(const int64_t *shape, int ndim, int dtype, int dt, int di, tc_tensor *out) {
  TC_TRY *out = wrap(at::zeros(dims(shape, ndim), options(dtype, dt, di)));
  TC_CATCH
}
int tc_ones(const int64_t *shape, int ndim, int dtype, int dt, int di, tc_tensor *out) {
  TC_TRY *out = wrap(at::ones(dims(shape, ndim), options(dtype, dt, di)));
  TC_CATCH
}
int tc_full(const int64_t *shape, int ndim, double value, int dtype, int dt, int di, tc_tensor *out) {
  TC_TRY *out = wrap(at::full(dims(shape, ndim), value, options(dtype, dt, di)));
  TC_CATCH
}
int tc_arange(double start, double end, double step, int dtype, int dt, int di, tc_tensor *out) {
  TC_TRY *out = wrap(at::arange(start, end, step, options(dtype, dt, di)));
  TC_CATCH
}
int tc_linspace(double start, double end, int64_t steps, int dtype, int dt, int di, tc_tensor *out) {
  TC_TRY *out = wrap(at::linspace(start, end, steps, options(dtype, dt, di)));
  TC_CATCH
}
int tc_rand(const int64_t *shape, int ndim, int dtype, tc_generator gen, int dt, int di,
            tc_tensor *out) {
  TC_TRY
  *out = wrap(draw([&](const at::TensorOptions &o) { return at::rand(dims(shape, ndim), generator(gen), o); },
                   dtype, gen, dt, di));
  TC_CATCH
}
int tc_randn(const int64_t *shape, int ndim, int dtype, tc_generator gen, int dt, int di,
             tc_tensor *out) {
  TC_TRY
  *out = wrap(draw([&](const at::TensorOptions &o) { return at::randn(dims(shape, ndim), generator(gen), o); },
                   dtype, gen, dt, di));
  TC_CATCH
}
int tc_randint(int64_t low, int64_t high, const int64_t *shape, int ndim, int dtype,
               tc_generator gen, int dt, int di, tc_tensor *out) {
  TC_TRY
  *out = wrap(draw([&](const at::TensorOptions &o) {
    return at::randint(low, high, dims(shape, ndim), generator(gen), o);
  }, dtype, gen, dt, di));
  TC_CATCH
}
int tc_randperm(int64_t n, tc_generator gen, tc_tensor *out) {
  TC_TRY *out = wrap(at::randperm(n, generator(gen), at::TensorOptions().dtype(at::kLong)));
  TC_CATCH
}
int tc_from_data(const void *data, size_t nbytes, const int64_t *shape, int ndim, int dtype,
                 tc_tensor *out) {
  TC_TRY
  auto t = at::empty(dims(shape, ndim), options(dtype, TC_DEVICE_CPU, 0));
  size_t expected = (size_t)t.numel() * t.element_size();
  if (expected != nbytes)
    throw std::invalid_argument("tc_from_data: " + std::to_string(nbytes) + " bytes given, shape needs " +
                                std::to_string(expected));
  if (nbytes) std::memcpy(t.data_ptr(), data, nbytes);
  *out = wrap(t);
  TC_CATCH
}
int tc_copy_to_buffer(tc_tensor t, void *dst, size_t nbytes) {
  TC_TRY
  auto c = T(t).detach().to(at::kCPU).contiguous();
  size_t have = (size_t)c.numel() * c.element_size();
  if (have != nbytes)
    throw std::invalid_argument("tc_copy_to_buffer: buffer holds " + std::to_string(nbytes) +
                                " bytes, tensor has " + std::to_string(have));
  if (nbytes) std::memcpy(dst, c.data_ptr(), nbytes);
  TC_CATCH
}
int tc_data_ptr(tc_tensor t, void **out) {
  TC_TRY
  auto &x = T(t);
  if (!x.device().is_cpu() || !x.is_contiguous())
    throw std::invalid_argument("tc_data_ptr needs a contiguous CPU tensor");
  *out = x.data_ptr();
  TC_CATCH
}
int tc_item_double(tc_tensor t, double *out) {
  TC_TRY *out = T(t).item<double>();
  TC_CATCH
}
int tc_item_int64(tc_tensor t, int64_t *out) {
  TC_TRY *out = T(t).item<int64_t>();
  TC_CATCH
}

// ---- in-place ----
int tc_copy_(tc_tensor dst, tc_tensor src) {
  TC_TRY T(dst).copy_(T(src));
  TC_CATCH
}
int tc_fill_(tc_tensor t, double value) {
  TC_TRY T(t).fill_(value);
  TC_CATCH
}
int tc_zero_(tc_tensor t) {
  TC_TRY T(t).zero_();
  TC_CATCH
}
int tc_uniform_(tc_tensor t, double from, double to, tc_generator gen) {
  TC_TRY T(t).uniform_(from, to, generator(gen));
  TC_CATCH
}
int tc_normal_(tc_tensor t, double mean, double std, tc_generator gen) {
  TC_TRY T(t).normal_(mean, std, generator(gen));
  TC_CATCH
}
int tc_add_scaled_(tc_tensor t, tc_tensor other, double alpha) {
  TC_TRY T(t).add_(T(other), alpha);
  TC_CATCH
}
int tc_mul_scalar_(tc_tensor t, double s) {
  TC_TRY T(t).mul_(s);
  TC_CATCH
}
int tc_lerp_(tc_tensor t, tc_tensor other, double weight) {
  TC_TRY T(t).lerp_(T(other), 1.0 - weight);
  TC_CATCH
}

int tc_set_data(tc_tensor t, tc_tensor src) {
  TC_TRY T(t).set_data(T(src));
  TC_CATCH
}

// ---- conversion ----
int tc_to(tc_tensor t, int dtype, int dt, int di, int copy, tc_tensor *out) {
  TC_TRY
  auto &x = T(t);
  auto st = dtype < 0 ? x.scalar_type() : scalar_type(dtype);
  auto dev = dt < 0 ? x.device() : device(dt, di);
  *out = wrap(x.to(dev, st, /*non_blocking=*/false, copy != 0));
  TC_CATCH
}
int tc_clone(tc_tensor t, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).clone());
  TC_CATCH
}
int tc_detach(tc_tensor t, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).detach());
  TC_CATCH
}
int tc_contiguous(tc_tensor t, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).contiguous());
  TC_CATCH
}

// ---- shape ----
int tc_reshape(tc_tensor t, const int64_t *shape, int ndim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).reshape(dims(shape, ndim)));
  TC_CATCH
}
int tc_view(tc_tensor t, const int64_t *shape, int ndim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).view(dims(shape, ndim)));
  TC_CATCH
}
int tc_permute(tc_tensor t, const int64_t *d, int ndim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).permute(dims(d, ndim)));
  TC_CATCH
}
int tc_transpose(tc_tensor t, int64_t d0, int64_t d1, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).transpose(d0, d1));
  TC_CATCH
}
int tc_squeeze(tc_tensor t, int64_t dim, int all, tc_tensor *out) {
  TC_TRY *out = wrap(all ? T(t).squeeze() : T(t).squeeze(dim));
  TC_CATCH
}
int tc_unsqueeze(tc_tensor t, int64_t dim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).unsqueeze(dim));
  TC_CATCH
}
int tc_flatten(tc_tensor t, int64_t start, int64_t end, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).flatten(start, end));
  TC_CATCH
}
int tc_expand(tc_tensor t, const int64_t *shape, int ndim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).expand(dims(shape, ndim)));
  TC_CATCH
}
int tc_repeat(tc_tensor t, const int64_t *r, int ndim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).repeat(dims(r, ndim)));
  TC_CATCH
}
int tc_repeat_interleave(tc_tensor t, int64_t repeats, int64_t dim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).repeat_interleave(repeats, dim));
  TC_CATCH
}
static std::vector<at::Tensor> list(const tc_tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}
int tc_cat(const tc_tensor *ts, int n, int64_t dim, tc_tensor *out) {
  TC_TRY *out = wrap(at::cat(list(ts, n), dim));
  TC_CATCH
}
int tc_stack(const tc_tensor *ts, int n, int64_t dim, tc_tensor *out) {
  TC_TRY *out = wrap(at::stack(list(ts, n), dim));
  TC_CATCH
}
int tc_chunk(tc_tensor t, int64_t chunks, int64_t dim, tc_tensor *outs, int capacity, int *count) {
  TC_TRY
  auto parts = T(t).chunk(chunks, dim);
  if ((int)parts.size() > capacity) throw std::invalid_argument("tc_chunk: capacity too small");
  for (size_t i = 0; i < parts.size(); i++) outs[i] = wrap(parts[i]);
  *count = (int)parts.size();
  TC_CATCH
}
int tc_split(tc_tensor t, const int64_t *sizes, int n, int64_t dim, tc_tensor *outs) {
  TC_TRY
  auto parts = T(t).split_with_sizes(dims(sizes, n), dim);
  for (size_t i = 0; i < parts.size(); i++) outs[i] = wrap(parts[i]);
  TC_CATCH
}
int tc_narrow(tc_tensor t, int64_t dim, int64_t start, int64_t length, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).narrow(dim, start, length));
  TC_CATCH
}
int tc_slice(tc_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).slice(dim, start, end, step));
  TC_CATCH
}
int tc_select(tc_tensor t, int64_t dim, int64_t index, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).select(dim, index));
  TC_CATCH
}
int tc_index_select(tc_tensor t, int64_t dim, tc_tensor index, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).index_select(dim, T(index)));
  TC_CATCH
}
int tc_gather(tc_tensor t, int64_t dim, tc_tensor index, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).gather(dim, T(index)));
  TC_CATCH
}
int tc_flip(tc_tensor t, const int64_t *d, int ndim, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).flip(dims(d, ndim)));
  TC_CATCH
}
int tc_pad(tc_tensor t, const int64_t *pad, int npad, int mode, double value, tc_tensor *out) {
  TC_TRY
  auto &x = T(t);
  auto p = dims(pad, npad);
  at::Tensor r;
  switch (mode) {
    case 0: r = at::constant_pad_nd(x, p, value); break;
    case 1:
      if (npad == 2) r = at::reflection_pad1d(x, p);
      else if (npad == 4) r = at::reflection_pad2d(x, p);
      else r = at::reflection_pad3d(x, p);
      break;
    case 2:
      if (npad == 2) r = at::replication_pad1d(x, p);
      else if (npad == 4) r = at::replication_pad2d(x, p);
      else r = at::replication_pad3d(x, p);
      break;
    default: throw std::invalid_argument("tc_pad: unknown mode " + std::to_string(mode));
  }
  *out = wrap(r);
  TC_CATCH
}
int tc_masked_fill(tc_tensor t, tc_tensor mask, double value, tc_tensor *out) {
  TC_TRY *out = wrap(T(t).masked_fill(T(mask), value));
  TC_CATCH
}
int tc_where(tc_tensor cond, tc_tensor a, tc_tensor b, tc_tensor *out) {
  TC_TRY *out = wrap(at::where(T(cond), T(a), T(b)));
  TC_CATCH
}
int tc_tril(tc_tensor t, int64_t diagonal, tc_tensor *out) {
  TC_TRY *out = wrap(at::tril(T(t), diagonal));
  TC_CATCH
}

// ---- elementwise ----
int tc_unary(int op, tc_tensor a, tc_tensor *out) {
  TC_TRY
  auto &x = T(a);
  at::Tensor r;
  switch (op) {
    case TC_U_NEG: r = at::neg(x); break;
    case TC_U_ABS: r = at::abs(x); break;
    case TC_U_SQRT: r = at::sqrt(x); break;
    case TC_U_RSQRT: r = at::rsqrt(x); break;
    case TC_U_EXP: r = at::exp(x); break;
    case TC_U_LOG: r = at::log(x); break;
    case TC_U_SIN: r = at::sin(x); break;
    case TC_U_COS: r = at::cos(x); break;
    case TC_U_FLOOR: r = at::floor(x); break;
    case TC_U_CEIL: r = at::ceil(x); break;
    case TC_U_ROUND: r = at::round(x); break;
    case TC_U_TRUNC: r = at::trunc(x); break;
    case TC_U_SIGN: r = at::sign(x); break;
    case TC_U_RECIPROCAL: r = at::reciprocal(x); break;
    case TC_U_SQUARE: r = at::square(x); break;
    case TC_U_SIGMOID: r = at::sigmoid(x); break;
    case TC_U_TANH: r = at::tanh(x); break;
    case TC_U_RELU: r = at::relu(x); break;
    case TC_U_SILU: r = at::silu(x); break;
    case TC_U_GELU: r = at::gelu(x, "none"); break;
    case TC_U_GELU_TANH: r = at::gelu(x, "tanh"); break;
    case TC_U_QUICK_GELU: r = x * at::sigmoid(x * 1.702); break;
    case TC_U_SOFTPLUS: r = at::softplus(x, 1.0, 20.0); break;
    case TC_U_ERF: r = at::erf(x); break;
    case TC_U_LOG1P: r = at::log1p(x); break;
    case TC_U_EXPM1: r = at::expm1(x); break;
    case TC_U_LOGICAL_NOT: r = at::logical_not(x); break;
    case TC_U_ISNAN: r = at::isnan(x); break;
    case TC_U_ISFINITE: r = at::isfinite(x); break;
    case TC_U_LOGSIGMOID: r = at::log_sigmoid(x); break;
    default: throw std::invalid_argument("tc_unary: unknown op " + std::to_string(op));
  }
  *out = wrap(r);
  TC_CATCH
}

static at::Tensor binary(int op, const at::Tensor &a, const at::Tensor &b) {
  switch (op) {
    case TC_B_ADD: return at::add(a, b);
    case TC_B_SUB: return at::sub(a, b);
    case TC_B_MUL: return at::mul(a, b);
    case TC_B_DIV: return at::div(a, b);
    case TC_B_POW: return at::pow(a, b);
    case TC_B_EQ: return at::eq(a, b);
    case TC_B_NE: return at::ne(a, b);
    case TC_B_LT: return at::lt(a, b);
    case TC_B_LE: return at::le(a, b);
    case TC_B_GT: return at::gt(a, b);
    case TC_B_GE: return at::ge(a, b);
    case TC_B_MAXIMUM: return at::maximum(a, b);
    case TC_B_MINIMUM: return at::minimum(a, b);
    case TC_B_LOGICAL_AND: return at::logical_and(a, b);
    case TC_B_LOGICAL_OR: return at::logical_or(a, b);
    case TC_B_REMAINDER: return at::remainder(a, b);
    case TC_B_FLOOR_DIVIDE: return at::floor_divide(a, b);
    case TC_B_ATAN2: return at::atan2(a, b);
  }
  throw std::invalid_argument("tc_binary: unknown op " + std::to_string(op));
}
int tc_binary(int op, tc_tensor a, tc_tensor b, tc_tensor *out) {
  TC_TRY *out = wrap(binary(op, T(a), T(b)));
  TC_CATCH
}
int tc_binary_scalar(int op, tc_tensor a, double s, int reverse, tc_tensor *out) {
  TC_TRY
  auto &x = T(a);
  // pow has Scalar overloads (Python's `t ** 0.5` uses them; they dispatch 0.5 to sqrt, 2 to
  // square …), so take the same kernels for the same numbers.
  if (op == TC_B_POW) {
    *out = wrap(reverse ? at::pow(at::Scalar(s), x) : at::pow(x, at::Scalar(s)));
    return 0;
  }
  // A 0-dim "wrapped number" keeps x's dtype under type promotion, as Python scalars do.
  auto sc = c10::scalar_to_tensor(at::Scalar(s), x.device());
  sc.unsafeGetTensorImpl()->set_wrapped_number(true);
  *out = wrap(reverse ? binary(op, sc, x) : binary(op, x, sc));
  TC_CATCH
}
int tc_clamp(tc_tensor t, int has_min, double mn, int has_max, double mx, tc_tensor *out) {
  TC_TRY
  c10::optional<at::Scalar> lo = has_min ? c10::optional<at::Scalar>(mn) : c10::nullopt;
  c10::optional<at::Scalar> hi = has_max ? c10::optional<at::Scalar>(mx) : c10::nullopt;
  *out = wrap(at::clamp(T(t), lo, hi));
  TC_CATCH
}
int tc_leaky_relu(tc_tensor t, double slope, tc_tensor *out) {
  TC_TRY *out = wrap(at::leaky_relu(T(t), slope));
  TC_CATCH
}
int tc_matmul(tc_tensor a, tc_tensor b, tc_tensor *out) {
  TC_TRY *out = wrap(at::matmul(T(a), T(b)));
  TC_CATCH
}
int tc_bmm(tc_tensor a, tc_tensor b, tc_tensor *out) {
  TC_TRY *out = wrap(at::bmm(T(a), T(b)));
  TC_CATCH
}
int tc_baddbmm(tc_tensor input, tc_tensor b1, tc_tensor b2, double beta, double alpha, tc_tensor *out) {
  TC_TRY *out = wrap(at::baddbmm(T(input), T(b1), T(b2), beta, alpha));
  TC_CATCH
}

// ---- reductions ----
static at::Tensor reduce_each(const at::Tensor &x, at::IntArrayRef ds,
                              const std::function<at::Tensor(const at::Tensor &, int64_t)> &f) {
  std::vector<int64_t> sorted(ds.begin(), ds.end());
  for (auto &d : sorted) if (d < 0) d += x.dim();
  std::sort(sorted.rbegin(), sorted.rend());
  at::Tensor r = x;
  for (auto d : sorted) r = f(r, d);
  return r;
}
int tc_reduce(int op, tc_tensor t, const int64_t *d, int nd, int keepdim, tc_tensor *out) {
  TC_TRY
  auto &x = T(t);
  bool all = nd == 0;
  std::vector<int64_t> every;
  if (all) for (int64_t i = 0; i < x.dim(); i++) every.push_back(i);
  at::IntArrayRef ds = all ? at::IntArrayRef(every) : dims(d, nd);
  at::Tensor r;
  switch (op) {
    case TC_R_SUM: r = all && !keepdim ? at::sum(x) : at::sum(x, ds, keepdim); break;
    case TC_R_MEAN: r = all && !keepdim ? at::mean(x) : at::mean(x, ds, keepdim); break;
    case TC_R_AMAX: r = at::amax(x, ds, keepdim); break;
    case TC_R_AMIN: r = at::amin(x, ds, keepdim); break;
    // prod/any/all reduce one dimension per call here: take the dims from the last to the first.
    case TC_R_PROD:
      r = all && !keepdim ? at::prod(x) : reduce_each(x, ds, [&](const at::Tensor &v, int64_t k) { return at::prod(v, k, keepdim); });
      break;
    case TC_R_ANY:
      r = all && !keepdim ? at::any(x) : reduce_each(x, ds, [&](const at::Tensor &v, int64_t k) { return at::any(v, k, keepdim); });
      break;
    case TC_R_ALL:
      r = all && !keepdim ? at::all(x) : reduce_each(x, ds, [&](const at::Tensor &v, int64_t k) { return at::all(v, k, keepdim); });
      break;
    case TC_R_LOGSUMEXP: r = at::logsumexp(x, ds, keepdim); break;
    default: throw std::invalid_argument("tc_reduce: unknown op " + std::to_string(op));
  }
  *out = wrap(r);
  TC_CATCH
}
int tc_var(tc_tensor t, const int64_t *d, int nd, int64_t correction, int keepdim, int is_std,
           tc_tensor *out) {
  TC_TRY
  auto &x = T(t);
  c10::optional<at::IntArrayRef> ds = nd == 0 ? c10::nullopt : c10::optional<at::IntArrayRef>(dims(d, nd));
  *out = wrap(is_std ? at::std(x, ds, correction, keepdim) : at::var(x, ds, correction, keepdim));
  TC_CATCH
}
int tc_max_dim(tc_tensor t, int64_t dim, int keepdim, int is_min, tc_tensor *values, tc_tensor *indices) {
  TC_TRY
  auto r = is_min ? at::min(T(t), dim, keepdim) : at::max(T(t), dim, keepdim);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  TC_CATCH
}
int tc_argmax(tc_tensor t, int64_t dim, int has_dim, int keepdim, int is_min, tc_tensor *out) {
  TC_TRY
  c10::optional<int64_t> d = has_dim ? c10::optional<int64_t>(dim) : c10::nullopt;
  *out = wrap(is_min ? at::argmin(T(t), d, keepdim) : at::argmax(T(t), d, keepdim));
  TC_CATCH
}
int tc_norm(tc_tensor t, double p, const int64_t *d, int nd, int keepdim, tc_tensor *out) {
  TC_TRY
  auto &x = T(t);
  *out = wrap(nd == 0 ? at::norm(x, p) : at::norm(x, p, dims(d, nd), keepdim));
  TC_CATCH
}
int tc_softmax(tc_tensor t, int64_t dim, int log, tc_tensor *out) {
  TC_TRY *out = wrap(log ? at::log_softmax(T(t), dim) : at::softmax(T(t), dim));
  TC_CATCH
}
int tc_cumsum(tc_tensor t, int64_t dim, tc_tensor *out) {
  TC_TRY *out = wrap(at::cumsum(T(t), dim));
  TC_CATCH
}
int tc_sort(tc_tensor t, int64_t dim, int descending, tc_tensor *values, tc_tensor *indices) {
  TC_TRY
  auto r = at::sort(T(t), /*stable=*/true, dim, descending != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  TC_CATCH
}
int tc_allclose(tc_tensor a, tc_tensor b, double rtol, double atol, int *out) {
  TC_TRY *out = at::allclose(T(a), T(b), rtol, atol) ? 1 : 0;
  TC_CATCH
}

}  // extern "C"
