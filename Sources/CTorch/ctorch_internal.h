// ctorch_internal.h — shared helpers of the C shim (not part of the public C header).
#pragma once
#include <ATen/ATen.h>
#include <string>
#include <vector>
#include "ctorch.h"

struct tc_generator_s { at::Generator gen; };

namespace ctorch {
void set_error(const std::string &msg);

inline at::Tensor &T(tc_tensor t) {
  if (!t) throw std::invalid_argument("null tensor handle");
  return *reinterpret_cast<at::Tensor *>(t);
}
inline c10::optional<at::Tensor> opt(tc_tensor t) {
  if (!t) return c10::nullopt;
  return *reinterpret_cast<at::Tensor *>(t);
}
inline tc_tensor wrap(at::Tensor t) { return reinterpret_cast<tc_tensor>(new at::Tensor(std::move(t))); }
inline at::IntArrayRef dims(const int64_t *p, int n) { return at::IntArrayRef(p, (size_t)n); }
at::ScalarType scalar_type(int dtype);
int dtype_code(at::ScalarType st);
at::Device device(int type, int index);
at::TensorOptions options(int dtype, int dev_type, int dev_index);
c10::optional<at::Generator> generator(tc_generator g);
}  // namespace ctorch

// Every exported function body goes between TC_TRY and TC_CATCH: nothing may escape to Swift.
#define TC_TRY try {
#define TC_CATCH                                                        \
  }                                                                     \
  catch (const c10::Error &e) {                                         \
    ctorch::set_error(e.what_without_backtrace());                      \
    return 1;                                                           \
  }                                                                     \
  catch (const std::exception &e) {                                     \
    ctorch::set_error(e.what());                                        \
    return 1;                                                           \
  }                                                                     \
  catch (...) {                                                         \
    ctorch::set_error("unknown C++ exception");                         \
    return 1;                                                           \
  }                                                                     \
  return 0;
