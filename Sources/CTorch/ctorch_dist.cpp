// ctorch_dist.cpp — c10d for the C surface: a TCPStore rendezvous (torch/csrc/distributed/c10d/TCPStore.hpp,
// what torch.distributed.init_process_group(init_method="env://") creates), ProcessGroupGloo
// (ProcessGroupGloo.hpp) and, in a CUDA build, ProcessGroupNCCL; bucketed averaged all-reduce,
// broadcast and barrier as torch/nn/parallel/distributed.py uses them. Every collective waits with a
// timeout, so a dead or stuck peer becomes an error, never a hang.
//
// Gloo needs its own headers (Debian's libgloo-dev; neither LibTorch ships them) and USE_C10D_GLOO;
// without them (CTORCH_NO_GLOO) the functions still exist and report that Gloo is not compiled in.
#include "ctorch_internal.h"

#include <torch/csrc/api/include/torch/version.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/custom_function.h>
#if defined(USE_C10D_GLOO)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#if TORCH_VERSION_MAJOR >= 2
using PGBase = c10d::Backend;
#else
using PGBase = c10d::ProcessGroup;
#endif

struct tc_store_s { c10::intrusive_ptr<c10d::Store> store; };
struct tc_process_group_s {
  c10::intrusive_ptr<PGBase> pg;
  int rank = 0;
  int world_size = 1;
};
struct tc_heartbeat_s {
  std::atomic<bool> stop{false};
  std::thread thread;
};

namespace {
std::chrono::milliseconds ms(int64_t v) { return std::chrono::milliseconds(v); }

c10::intrusive_ptr<c10d::Store> make_tcp_store(const std::string &host, int port, bool server, int world_size,
                                               int64_t timeout_ms) {
  if (port <= 0 || port > 65535) throw std::invalid_argument("TCPStore: port " + std::to_string(port) + " is not in 1...65535");
  if (world_size < 1) throw std::invalid_argument("TCPStore: world size must be >= 1");
  if (timeout_ms <= 0) throw std::invalid_argument("TCPStore: timeout must be > 0 ms");
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = server;
  o.numWorkers = static_cast<std::size_t>(world_size);
  o.waitWorkers = false;  // the process group's own rendezvous waits for every rank (with the timeout)
  o.timeout = ms(timeout_ms);
  return c10::make_intrusive<c10d::TCPStore>(host, o);
}

void wait_work(const c10::intrusive_ptr<c10d::Work> &work, int64_t timeout_ms, const char *what) {
  if (!work->wait(ms(timeout_ms))) throw std::runtime_error(std::string(what) + " did not complete");
}

// Buckets of consecutive same-dtype, same-device tensors of at most `bucket_bytes` each (a tensor
// bigger than that gets a bucket of its own), as DDP's reducer groups gradients.
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor> &ts, int64_t bucket_bytes) {
  std::vector<std::vector<at::Tensor>> out;
  int64_t bytes = 0;
  for (const auto &t : ts) {
    int64_t b = t.numel() * (int64_t)t.element_size();
    bool fresh = out.empty() || bytes + b > bucket_bytes || out.back().front().scalar_type() != t.scalar_type() ||
                 out.back().front().device() != t.device();
    if (fresh) { out.emplace_back(); bytes = 0; }
    out.back().push_back(t);
    bytes += b;
  }
  return out;
}

std::vector<at::Tensor> borrowed(tc_tensor *tensors, int n) {
  if (n < 0 || (n > 0 && !tensors)) throw std::invalid_argument("bad tensor list");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(ctorch::T(tensors[i]));
  return v;
}

tc_process_group_s &P(tc_process_group pg) {
  if (!pg) throw std::invalid_argument("null process group handle");
  return *pg;
}
c10d::Store &S(tc_store s) {
  if (!s) throw std::invalid_argument("null store handle");
  return *s->store;
}
}  // namespace

extern "C" {

int tc_distributed_backend_available(int backend, int *out) {
  TC_TRY
  if (backend == TC_PG_GLOO) {
#if defined(USE_C10D_GLOO)
    *out = 1;
#else
    *out = 0;
#endif
  } else if (backend == TC_PG_NCCL) {
#if defined(USE_C10D_NCCL)
    *out = 1;
#else
    *out = 0;
#endif
  } else {
    throw std::invalid_argument("unknown process-group backend code " + std::to_string(backend));
  }
  TC_CATCH
}

int tc_tcp_store_create(const char *host, int port, int is_server, int world_size, int64_t timeout_ms, tc_store *out) {
  TC_TRY
  if (!host || !*host) throw std::invalid_argument("TCPStore: empty host");
  *out = new tc_store_s{make_tcp_store(host, port, is_server != 0, world_size, timeout_ms)};
  TC_CATCH
}

void tc_store_free(tc_store s) { delete s; }

int tc_store_set(tc_store s, const char *key, const uint8_t *data, int64_t len) {
  TC_TRY
  if (!key || len < 0 || (len > 0 && !data)) throw std::invalid_argument("store set: bad arguments");
  S(s).set(key, std::vector<uint8_t>(data, data + len));
  TC_CATCH
}

int tc_store_get(tc_store s, const char *key, uint8_t **data, int64_t *len) {
  TC_TRY
  if (!key) throw std::invalid_argument("store get: null key");
  auto v = S(s).get(key);
  auto *p = static_cast<uint8_t *>(std::malloc(v.empty() ? 1 : v.size()));
  if (!p) throw std::bad_alloc();
  if (!v.empty()) std::memcpy(p, v.data(), v.size());
  *data = p;
  *len = (int64_t)v.size();
  TC_CATCH
}

void tc_buffer_free(uint8_t *p) { std::free(p); }

int tc_store_add(tc_store s, const char *key, int64_t delta, int64_t *out) {
  TC_TRY
  if (!key) throw std::invalid_argument("store add: null key");
  *out = S(s).add(key, delta);
  TC_CATCH
}

int tc_store_check(tc_store s, const char *key, int *out) {
  TC_TRY
  if (!key) throw std::invalid_argument("store check: null key");
  *out = S(s).check({std::string(key)}) ? 1 : 0;
  TC_CATCH
}

int tc_heartbeat_start(const char *host, int port, const char *key, int64_t interval_ms, int64_t timeout_ms,
                       tc_heartbeat *out) {
  TC_TRY
  if (!host || !key || interval_ms <= 0) throw std::invalid_argument("heartbeat: bad arguments");
  // A client connection of its own, so that beats never queue behind a collective's store traffic.
  auto store = make_tcp_store(host, port, false, 1, timeout_ms);
  auto *hb = new tc_heartbeat_s();
  std::string k(key);
  hb->thread = std::thread([hb, store, k, interval_ms]() {
    while (!hb->stop.load()) {
      try {
        store->add(k, 1);
      } catch (...) {
        return;  // the store (rank 0) is gone: nothing left to tell
      }
      for (int64_t waited = 0; waited < interval_ms && !hb->stop.load(); waited += 20)
        std::this_thread::sleep_for(ms(20));
    }
  });
  *out = hb;
  TC_CATCH
}

void tc_heartbeat_stop(tc_heartbeat hb) {
  if (!hb) return;
  hb->stop.store(true);
  if (hb->thread.joinable()) hb->thread.join();
  delete hb;
}

int tc_process_group_create(tc_store s, int backend, int rank, int world_size, int64_t timeout_ms,
                            const char *gloo_hostname, tc_process_group *out) {
  TC_TRY
  if (!s) throw std::invalid_argument("null store handle");
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw std::invalid_argument("rank " + std::to_string(rank) + " is not in 0..<" + std::to_string(world_size));
  if (timeout_ms <= 0) throw std::invalid_argument("process group: timeout must be > 0 ms");
  auto *h = new tc_process_group_s();
  std::unique_ptr<tc_process_group_s> guard(h);
  h->rank = rank;
  h->world_size = world_size;
  if (backend == TC_PG_GLOO) {
#if defined(USE_C10D_GLOO)
    auto opts = c10d::ProcessGroupGloo::Options::create(ms(timeout_ms));
    if (gloo_hostname && *gloo_hostname) {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(gloo_hostname));
    } else {
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    opts->threads = 2;
    h->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s->store, rank, world_size, opts);
#else
    throw std::runtime_error(
        "this build has no Gloo: CTorch was compiled without USE_C10D_GLOO (the gloo headers, Debian's "
        "libgloo-dev, were missing at build time); install libgloo-dev and rebuild for more than one process");
#endif
  } else if (backend == TC_PG_NCCL) {
#if defined(USE_C10D_NCCL)
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = ms(timeout_ms);
    h->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(s->store, rank, world_size, opts);
#else
    throw std::runtime_error("this build has no NCCL: build against a CUDA LibTorch with TORCH_CUDA=1");
#endif
  } else {
    throw std::invalid_argument("unknown process-group backend code " + std::to_string(backend));
  }
  *out = guard.release();
  TC_CATCH
}

void tc_process_group_free(tc_process_group pg) { delete pg; }

int tc_pg_allreduce_mean(tc_process_group pg, tc_tensor *tensors, int n, int64_t bucket_bytes, int64_t timeout_ms) {
  TC_TRY
  auto &p = P(pg);
  auto ts = borrowed(tensors, n);
  at::NoGradGuard no_grad;
  for (auto &bucket : buckets(ts, bucket_bytes > 0 ? bucket_bytes : (int64_t)25 << 20)) {
    std::vector<at::Tensor> flat_views;
    for (auto &t : bucket) flat_views.push_back(t.reshape({-1}));
    std::vector<at::Tensor> buf{at::cat(flat_views)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = ms(timeout_ms);
    wait_work(p.pg->allreduce(buf, o), timeout_ms, "all-reduce");
    buf[0].div_((double)p.world_size);
    int64_t offset = 0;
    for (auto &t : bucket) {
      int64_t k = t.numel();
      t.copy_(buf[0].narrow(0, offset, k).view(t.sizes()));
      offset += k;
    }
  }
  TC_CATCH
}

}  // extern "C"

namespace {
// torch/nn/modules/_functions.py SyncBatchNorm's collective, reduced to its core: the forward sums
// a tensor over the ranks, and so does the backward (every rank's loss depends on every rank's
// input through the sum), so gradients equal those of one process holding the whole batch.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor reduce(tc_process_group_s &p, const at::Tensor &t, int64_t timeout_ms) {
    std::vector<at::Tensor> buf{t.detach().clone().contiguous()};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = ms(timeout_ms);
    wait_work(p.pg->allreduce(buf, o), timeout_ms, "all-reduce");
    return buf[0];
  }
  static at::Tensor forward(torch::autograd::AutogradContext *ctx, at::Tensor x, int64_t pg, int64_t timeout_ms) {
    ctx->saved_data["pg"] = pg;
    ctx->saved_data["timeout"] = timeout_ms;
    return reduce(*reinterpret_cast<tc_process_group_s *>(pg), x, timeout_ms);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto &p = *reinterpret_cast<tc_process_group_s *>(ctx->saved_data["pg"].toInt());
    return {reduce(p, grads[0], ctx->saved_data["timeout"].toInt()), at::Tensor(), at::Tensor()};
  }
};
}  // namespace

extern "C" {

int tc_pg_allreduce_sum_autograd(tc_process_group pg, tc_tensor t, int64_t timeout_ms, tc_tensor *out) {
  TC_TRY
  P(pg);  // validates the handle
  *out = ctorch::wrap(AllReduceSum::apply(ctorch::T(t), (int64_t)reinterpret_cast<intptr_t>(pg), timeout_ms));
  TC_CATCH
}

int tc_pg_broadcast(tc_process_group pg, tc_tensor *tensors, int n, int root, int64_t bucket_bytes, int64_t timeout_ms) {
  TC_TRY
  auto &p = P(pg);
  if (root < 0 || root >= p.world_size) throw std::invalid_argument("broadcast: root " + std::to_string(root) + " is not a rank");
  auto ts = borrowed(tensors, n);
  at::NoGradGuard no_grad;
  for (auto &bucket : buckets(ts, bucket_bytes > 0 ? bucket_bytes : (int64_t)25 << 20)) {
    std::vector<at::Tensor> flat_views;
    for (auto &t : bucket) flat_views.push_back(t.reshape({-1}));
    std::vector<at::Tensor> buf{at::cat(flat_views)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    o.rootTensor = 0;
    o.timeout = ms(timeout_ms);
    wait_work(p.pg->broadcast(buf, o), timeout_ms, "broadcast");
    int64_t offset = 0;
    for (auto &t : bucket) {
      int64_t k = t.numel();
      t.copy_(buf[0].narrow(0, offset, k).view(t.sizes()));
      offset += k;
    }
  }
  TC_CATCH
}

int tc_pg_barrier(tc_process_group pg, int64_t timeout_ms) {
  TC_TRY
  auto &p = P(pg);
  c10d::BarrierOptions o;
  o.timeout = ms(timeout_ms);
  wait_work(p.pg->barrier(o), timeout_ms, "barrier");
  TC_CATCH
}

}  // extern "C"
