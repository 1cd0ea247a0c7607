// ctorch_profile.cpp — where a step's time and ops go, for `personalive bench … --profile`:
// torch.autograd.profiler's RecordProfile (torch/csrc/autograd/profiler_legacy.h; a Chrome trace of
// every op, written when the profile ends) and an op counter on RecordFunction, the hook that
// torch.profiler's op events come from (ATen/record_function.h), counting operator calls and
// autograd backward nodes by name.
#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "ctorch_internal.h"

struct tc_profile_s {
  std::unique_ptr<torch::autograd::profiler::RecordProfile> record;
};

namespace {
std::mutex counts_mutex;
std::map<std::string, int64_t> *active_counts = nullptr;  // guarded by counts_mutex
at::CallbackHandle counter_handle = 0;

std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction &fn) {
  std::lock_guard<std::mutex> guard(counts_mutex);
  if (active_counts) (*active_counts)[fn.name()]++;
  return nullptr;
}
}  // namespace

extern "C" {

int tc_profile_begin(const char *chrome_trace_path, tc_profile *out) {
  TC_TRY
  if (!chrome_trace_path || !*chrome_trace_path) throw std::invalid_argument("profile: empty trace path");
  auto p = std::make_unique<tc_profile_s>();
  p->record = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(chrome_trace_path));
  *out = p.release();
  TC_CATCH
}

int tc_profile_end(tc_profile p) {
  TC_TRY
  if (!p) throw std::invalid_argument("profile: null handle");
  std::unique_ptr<tc_profile_s> owned(p);
  owned->record.reset();  // stops the profiler and writes the trace
  TC_CATCH
}

int tc_op_count_begin(void) {
  TC_TRY
  std::lock_guard<std::mutex> guard(counts_mutex);
  if (active_counts) throw std::logic_error("op count: already counting");
  active_counts = new std::map<std::string, int64_t>();
  // Thread-local (and carried into the autograd engine's threads with the thread-local state):
  // ops that other threads of the process run meanwhile are not counted.
  counter_handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&count_op).scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION}));
  TC_CATCH
}

// The counts since tc_op_count_begin as "name\tcount\n" lines in a malloc'd buffer (tc_buffer_free).
int tc_op_count_end(uint8_t **text, int64_t *len) {
  TC_TRY
  if (counter_handle) at::removeCallback(counter_handle);
  counter_handle = 0;
  std::unique_ptr<std::map<std::string, int64_t>> counts;
  {
    std::lock_guard<std::mutex> guard(counts_mutex);
    if (!active_counts) throw std::logic_error("op count: not counting");
    counts.reset(active_counts);
    active_counts = nullptr;
  }
  std::string s;
  for (auto &kv : *counts) s += kv.first + "\t" + std::to_string(kv.second) + "\n";
  *text = static_cast<uint8_t *>(std::malloc(s.size() + 1));
  if (!*text) throw std::bad_alloc();
  std::memcpy(*text, s.data(), s.size());
  *len = (int64_t)s.size();
  TC_CATCH
}

}  // extern "C"
