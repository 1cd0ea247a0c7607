// ctorch_nn.cpp — functional layers, attention, autograd, generators, AdamW and .pth files.
// Mirrors torch.nn.functional, torch.autograd, torch.optim.AdamW and torch.load/torch.save.
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/export.h>
#include <torch/csrc/jit/serialization/pickler.h>
#include <torch/torch.h>

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/unpickler.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <unordered_map>

#include "ctorch_internal.h"

using namespace ctorch;

struct tc_optimizer_s {
  std::unique_ptr<torch::optim::AdamW> opt;
  std::vector<at::Tensor> params;  // creation order, for state export
  std::vector<int> group_of;
  bool fused = false;  // step with _fused_adamw_ where the LibTorch has it
};

// The optimizer state map is keyed by the TensorImpl: a string of its address up to 1.13, the
// address itself from 2.0 on.
#if TORCH_VERSION_MAJOR >= 2
static void *state_key(const at::Tensor &p) { return p.unsafeGetTensorImpl(); }
#else
static std::string state_key(const at::Tensor &p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }
#endif

static std::array<int64_t, 2> pair(const int64_t *p) { return {p[0], p[1]}; }

// ---- .pth pickle compatibility ----
// Python's pickler writes two things that LibTorch 1.13's unpickler cannot read: SETITEM ('s'),
// emitted for a dict holding exactly one item ({"state_dict": sd}), and collections.OrderedDict
// (what module.state_dict() returns), which that unpickler turns into None. The stream is
// rewritten into an equivalent one that every LibTorch version reads:
//   key value SETITEM                 -> MARK key value SETITEMS
//   OrderedDict () REDUCE             -> EMPTY_DICT   (a memo slot of the class keeps an unused dict)
//   <OrderedDict> state BUILD         -> <OrderedDict> MARK kPickleStateKey state SETITEMS
// (the instance state, e.g. state_dict's `_metadata`, lands under a key that flatten() skips).
// It simulates the pickle machine's stack (where each item began, whether it is an OrderedDict)
// and gives the input back unchanged when it meets an opcode it does not know.
static const std::string kPickleStateKey = "\x01pickle_state";

namespace {
enum class PKind { other, od_class, od_object };
struct PItem {
  size_t start, op_end;  // where the item's first opcode begins and ends
  PKind kind;
};
struct PEdit {
  size_t at, remove;
  std::string insert;
};
}  // namespace

static std::string pth_compat_pickle(const std::string &in) {
  std::vector<PItem> stack;
  std::vector<std::pair<size_t, size_t>> marks;  // (stack depth, offset of the MARK)
  std::unordered_map<uint64_t, PKind> memo;
  std::vector<PEdit> edits;
  const size_t n = in.size();
  size_t pos = 0;
  bool stopped = false;
  auto le = [&](size_t at, int bytes) {
    uint64_t v = 0;
    for (int b = bytes - 1; b >= 0; b--) v = v << 8 | (uint8_t)in[at + b];
    return v;
  };
  while (pos < n && !stopped) {
    const size_t at = pos;
    const uint8_t op = (uint8_t)in[pos++];
    size_t len = 0;  // argument bytes
    switch (op) {
      case 0x80: case 'K': case 'q': case 'h': case 0x82: len = 1; break;
      case 'M': case 0x83: len = 2; break;
      case 'J': case 'r': case 'j': case 0x84: len = 4; break;
      case 'G': len = 8; break;
      case 0x8a: case 'U': case 'C': case 0x8c:
        if (pos + 1 > n) return in;
        len = 1 + le(pos, 1);
        break;
      case 0x8b: case 'X': case 'T': case 'B':
        if (pos + 4 > n) return in;
        len = 4 + le(pos, 4);
        break;
      case 'I': case 'L': case 'S': case 'V': case 'F': case 'p': case 'g': case 'P': case 'c': case 'i': {
        size_t e = pos;
        for (int line = 0; line < ((op == 'c' || op == 'i') ? 2 : 1); line++) {
          e = in.find('\n', e);
          if (e == std::string::npos) return in;
          e++;
        }
        len = e - pos;
        break;
      }
      default: break;
    }
    if (len > n - pos) return in;
    const std::string arg = in.substr(pos, len);
    pos += len;
    const size_t depth = stack.size();
    const size_t floor = marks.empty() ? 0 : marks.back().first;
    switch (op) {
      case 0x80: break;  // PROTO
      case 'q': case 'r': case 'p': case 0x94: {  // BINPUT, LONG_BINPUT, PUT, MEMOIZE
        if (depth == 0) return in;
        uint64_t idx = op == 'q' ? le(at + 1, 1) : op == 'r' ? le(at + 1, 4) : op == 'p' ? std::stoull(arg) : memo.size();
        memo[idx] = stack.back().kind;
        break;
      }
      case 'h': case 'j': case 'g': {  // BINGET, LONG_BINGET, GET
        uint64_t idx = op == 'h' ? le(at + 1, 1) : op == 'j' ? le(at + 1, 4) : std::stoull(arg);
        auto it = memo.find(idx);
        stack.push_back({at, pos, it == memo.end() ? PKind::other : it->second});
        break;
      }
      case '(': marks.emplace_back(depth, at); break;  // MARK
      case 't': case 'l': case 'd': case 'i': case 'e': case 'u': case '1': {  // pop to the mark
        if (marks.empty() || depth < floor) return in;
        size_t mark_at = marks.back().second;
        marks.pop_back();
        stack.resize(floor);
        if (op == 't' || op == 'l' || op == 'd' || op == 'i') stack.push_back({mark_at, mark_at + 1, PKind::other});
        break;
      }
      case '0': case 'a':  // POP, APPEND
        if (depth < 1) return in;
        stack.pop_back();
        break;
      case 'b':  // BUILD
        if (depth < 2) return in;
        if (stack[depth - 2].kind == PKind::od_object) {
          std::string key = "(X";
          for (int b = 0; b < 4; b++) key += (char)((kPickleStateKey.size() >> (8 * b)) & 0xff);
          edits.push_back({stack[depth - 1].start, 0, key + kPickleStateKey});
          edits.push_back({at, 1, "u"});
        }
        stack.pop_back();
        break;
      case 's':  // SETITEM
        if (depth < 3) return in;
        edits.push_back({stack[depth - 2].start, 0, "("});
        edits.push_back({at, 1, "u"});
        stack.resize(depth - 2);
        break;
      case 0x85: case 'Q':  // TUPLE1, BINPERSID: one in, one out
        if (depth < 1) return in;
        stack.back().kind = PKind::other;
        break;
      case 'R': case 0x86: case 0x81: case 0x93: {  // REDUCE, TUPLE2, NEWOBJ, STACK_GLOBAL
        if (depth < 2) return in;
        PItem first = stack[depth - 2], second = stack[depth - 1];
        bool od = op == 'R' && first.kind == PKind::od_class && in[second.start] == ')' && second.op_end == at;
        if (od) {  // the class becomes an empty dict; the empty tuple and REDUCE go
          edits.push_back({first.start, first.op_end - first.start, "}"});
          edits.push_back({second.start, 1, ""});
          edits.push_back({at, 1, ""});
        }
        stack.resize(depth - 2);
        stack.push_back({first.start, first.op_end, od ? PKind::od_object : PKind::other});
        break;
      }
      case 0x87: {  // TUPLE3
        if (depth < 3) return in;
        PItem first = stack[depth - 3];
        stack.resize(depth - 3);
        stack.push_back({first.start, first.op_end, PKind::other});
        break;
      }
      case '2':  // DUP
        if (depth < 1) return in;
        stack.push_back({at, pos, stack.back().kind});
        break;
      case '.': stopped = true; break;  // STOP
      case 'c':  // GLOBAL
        stack.push_back({at, pos, arg == "collections\nOrderedDict\n" ? PKind::od_class : PKind::other});
        break;
      case 'K': case 'M': case 'J': case 'G': case 0x8a: case 0x8b: case 'X': case 'T': case 'U': case 'B':
      case 'C': case 0x8c: case 'I': case 'L': case 'S': case 'V': case 'F': case 'P': case 'N': case 0x88:
      case 0x89: case '}': case ']': case ')': case 0x82: case 0x83: case 0x84:
        stack.push_back({at, pos, PKind::other});
        break;
      default: return in;  // FRAME, protocol-4 containers, ...: leave it to the unpickler
    }
  }
  if (!stopped || edits.empty()) return in;
  std::stable_sort(edits.begin(), edits.end(), [](const PEdit &a, const PEdit &b) {
    return a.at != b.at ? a.at < b.at : a.remove < b.remove;
  });
  std::string out;
  out.reserve(n + edits.size() * 2);
  size_t copied = 0;
  for (auto &e : edits) {
    if (e.at < copied) return in;  // overlapping edits: give up
    out.append(in, copied, e.at - copied);
    out += e.insert;
    copied = e.at + e.remove;
  }
  out.append(in, copied, std::string::npos);
  return out;
}

// torch::pickle_load of a torch.save zip, with the pickle made readable first.
static c10::IValue pth_unpickle(const std::vector<char> &bytes) {
  caffe2::serialize::PyTorchStreamReader reader(
      std::make_shared<caffe2::serialize::MemoryReadAdapter>(bytes.data(), (off_t)bytes.size()));
  at::DataPtr record;
  size_t size = 0;
  std::tie(record, size) = reader.getRecord("data.pkl");
  const std::string pickle = pth_compat_pickle(std::string(static_cast<const char *>(record.get()), size));
  size_t offset = 0;
  auto read = [&](char *buf, size_t len) -> size_t {
    len = std::min(len, pickle.size() - offset);
    memcpy(buf, pickle.data() + offset, len);
    offset += len;
    return len;
  };
  auto read_record = [&](const std::string &name) { return std::get<0>(reader.getRecord("data/" + name)); };
  torch::jit::Unpickler unpickler(read, nullptr, nullptr, read_record, c10::nullopt);
  unpickler.set_version(reader.version());
  return unpickler.parse_ivalue();
}

extern "C" {

// ---- functional ----
int tc_linear(tc_tensor x, tc_tensor w, tc_tensor b, tc_tensor *out) {
  TC_TRY *out = wrap(at::linear(T(x), T(w), opt(b)));
  TC_CATCH
}
int tc_conv2d(tc_tensor x, tc_tensor w, tc_tensor b, const int64_t *stride, const int64_t *padding,
              const int64_t *dilation, int64_t groups, tc_tensor *out) {
  TC_TRY
  const at::Tensor &X = T(x), &W = T(w);
  // On CPU float32 batches LibTorch picks oneDNN, whose per-call set-up dominates two kinds of
  // convolution in our networks: 1×1 kernels at the UNets' small feature maps (8×8 to 32×32, 32–96
  // channels) and convolutions of images or latents with at most 4 input channels (conv_in of the
  // UNets, VAE and PoseGuider). The native kernel (thnn_conv2d: im2col + GEMM, differentiable) runs
  // those 3–4× faster forward and 2–3× forward+backward (README, "Convolutions: LibTorch's native
  // kernel where oneDNN's set-up dominates"). Batch 1 keeps LibTorch's own choice.
  const bool shaped = X.dim() == 4 && W.dim() == 4 && X.size(1) == W.size(1);  // else conv2d's own error
  const bool pointwise = shaped && W.size(2) == 1 && W.size(3) == 1 && stride[0] == 1 && stride[1] == 1 && padding[0] == 0 &&
                         padding[1] == 0;
  if (shaped && X.device().is_cpu() && X.scalar_type() == at::kFloat && W.scalar_type() == at::kFloat &&
      X.size(0) > 1 && groups == 1 && dilation[0] == 1 && dilation[1] == 1 && X.is_contiguous() &&
      (pointwise || X.size(1) <= 4)) {
    *out = wrap(at::thnn_conv2d(X, W, {W.size(2), W.size(3)}, opt(b), pair(stride), pair(padding)));
  } else {
    *out = wrap(at::conv2d(X, W, opt(b), pair(stride), pair(padding), pair(dilation), groups));
  }
  TC_CATCH
}
int tc_conv_transpose2d(tc_tensor x, tc_tensor w, tc_tensor b, const int64_t *stride,
                        const int64_t *padding, const int64_t *output_padding, int64_t groups,
                        const int64_t *dilation, tc_tensor *out) {
  TC_TRY
  *out = wrap(at::conv_transpose2d(T(x), T(w), opt(b), pair(stride), pair(padding), pair(output_padding),
                                   groups, pair(dilation)));
  TC_CATCH
}
int tc_group_norm(tc_tensor x, int64_t groups, tc_tensor w, tc_tensor b, double eps, tc_tensor *out) {
  TC_TRY *out = wrap(at::group_norm(T(x), groups, opt(w), opt(b), eps, true));
  TC_CATCH
}
int tc_layer_norm(tc_tensor x, const int64_t *shape, int ndim, tc_tensor w, tc_tensor b, double eps,
                  tc_tensor *out) {
  TC_TRY *out = wrap(at::layer_norm(T(x), dims(shape, ndim), opt(w), opt(b), eps, true));
  TC_CATCH
}
int tc_batch_norm(tc_tensor x, tc_tensor w, tc_tensor b, tc_tensor rm, tc_tensor rv, int training,
                  double momentum, double eps, tc_tensor *out) {
  TC_TRY
  *out = wrap(at::batch_norm(T(x), opt(w), opt(b), opt(rm), opt(rv), training != 0, momentum, eps, true));
  TC_CATCH
}
int tc_dropout(tc_tensor x, double p, int training, tc_tensor *out) {
  TC_TRY *out = wrap(at::dropout(T(x), p, training != 0));
  TC_CATCH
}
int tc_interpolate(tc_tensor x, const int64_t *size, const double *scale, int mode, int align_corners,
                   int antialias, tc_tensor *out) {
  TC_TRY
  namespace F = torch::nn::functional;
  auto o = F::InterpolateFuncOptions();
  if (size) o = o.size(std::vector<int64_t>{size[0], size[1]});
  if (scale) o = o.scale_factor(std::vector<double>{scale[0], scale[1]});
  switch (mode) {
    case 0: o = o.mode(torch::kNearest); break;
    case 1: o = o.mode(torch::kBilinear).align_corners(align_corners != 0); break;
    case 2: o = o.mode(torch::kBicubic).align_corners(align_corners != 0); break;
    case 3: o = o.mode(torch::kNearestExact); break;
    case 4: o = o.mode(torch::kArea); break;
    default: throw std::invalid_argument("tc_interpolate: unknown mode " + std::to_string(mode));
  }
  if (antialias) o = o.antialias(true);
  *out = wrap(F::interpolate(T(x), o));
  TC_CATCH
}
int tc_avg_pool2d(tc_tensor x, const int64_t *k, const int64_t *s, const int64_t *p, int ceil_mode,
                  int count_include_pad, tc_tensor *out) {
  TC_TRY *out = wrap(at::avg_pool2d(T(x), pair(k), pair(s), pair(p), ceil_mode != 0, count_include_pad != 0));
  TC_CATCH
}
int tc_max_pool2d(tc_tensor x, const int64_t *k, const int64_t *s, const int64_t *p, int ceil_mode,
                  tc_tensor *out) {
  TC_TRY
  int64_t one[2] = {1, 1};
  *out = wrap(at::max_pool2d(T(x), pair(k), pair(s), pair(p), pair(one), ceil_mode != 0));
  TC_CATCH
}
int tc_adaptive_avg_pool2d(tc_tensor x, const int64_t *size, tc_tensor *out) {
  TC_TRY *out = wrap(at::adaptive_avg_pool2d(T(x), pair(size)));
  TC_CATCH
}
int tc_embedding(tc_tensor weight, tc_tensor indices, tc_tensor *out) {
  TC_TRY *out = wrap(at::embedding(T(weight), T(indices)));
  TC_CATCH
}
int tc_mse_loss(tc_tensor a, tc_tensor b, int reduction, tc_tensor *out) {
  TC_TRY *out = wrap(at::mse_loss(T(a), T(b), reduction));
  TC_CATCH
}
int tc_l1_loss(tc_tensor a, tc_tensor b, int reduction, tc_tensor *out) {
  TC_TRY *out = wrap(at::l1_loss(T(a), T(b), reduction));
  TC_CATCH
}
int tc_smooth_l1_loss(tc_tensor a, tc_tensor b, int reduction, double beta, tc_tensor *out) {
  TC_TRY *out = wrap(at::smooth_l1_loss(T(a), T(b), reduction, beta));
  TC_CATCH
}
int tc_cross_entropy(tc_tensor logits, tc_tensor target, int reduction, double label_smoothing,
                     tc_tensor *out) {
  TC_TRY
  *out = wrap(at::cross_entropy_loss(T(logits), T(target), c10::nullopt, reduction, -100, label_smoothing));
  TC_CATCH
}
int tc_attention(tc_tensor q, tc_tensor k, tc_tensor v, tc_tensor mask, double scale, int is_causal,
                 tc_tensor *out) {
  TC_TRY
#if TORCH_VERSION_MAJOR >= 2
  *out = wrap(at::scaled_dot_product_attention(T(q), T(k), T(v), opt(mask), 0.0, is_causal != 0, scale));
#else
  auto scores = at::matmul(T(q), T(k).transpose(-2, -1)) * scale;
  if (is_causal) {
    auto L = scores.size(-2), S = scores.size(-1);
    auto keep = at::ones({L, S}, at::TensorOptions().dtype(at::kBool).device(scores.device())).tril();
    scores = scores.masked_fill(keep.logical_not(), -std::numeric_limits<double>::infinity());
  }
  if (mask) {
    auto &m = T(mask);
    if (m.scalar_type() == at::kBool)
      scores = scores.masked_fill(m.logical_not(), -std::numeric_limits<double>::infinity());
    else
      scores = scores + m;
  }
  *out = wrap(at::matmul(at::softmax(scores, -1), T(v)));
#endif
  TC_CATCH
}

// ---- autograd ----
int tc_requires_grad(tc_tensor t, int *out) {
  TC_TRY *out = T(t).requires_grad() ? 1 : 0;
  TC_CATCH
}
int tc_set_requires_grad(tc_tensor t, int requires_grad) {
  TC_TRY T(t).set_requires_grad(requires_grad != 0);
  TC_CATCH
}
int tc_is_leaf(tc_tensor t, int *out) {
  TC_TRY *out = T(t).is_leaf() ? 1 : 0;
  TC_CATCH
}
int tc_backward(tc_tensor t, tc_tensor grad, int retain_graph, int create_graph) {
  TC_TRY
  at::Tensor g = grad ? T(grad) : at::Tensor();
  T(t).backward(g, retain_graph ? c10::optional<bool>(true) : c10::nullopt, create_graph != 0);
  TC_CATCH
}
int tc_grad(tc_tensor t, tc_tensor *out) {
  TC_TRY
  auto g = T(t).grad();
  *out = g.defined() ? wrap(g) : nullptr;
  TC_CATCH
}
int tc_set_grad(tc_tensor t, tc_tensor grad) {
  TC_TRY T(t).mutable_grad() = grad ? T(grad) : at::Tensor();
  TC_CATCH
}
int tc_zero_grad(tc_tensor t) {
  TC_TRY
  auto &g = T(t).mutable_grad();
  if (g.defined()) g.zero_();
  TC_CATCH
}
int tc_autograd_grad(const tc_tensor *outputs, int n_outputs, const tc_tensor *inputs, int n_inputs,
                     const tc_tensor *grad_outputs, int retain_graph, int create_graph, int allow_unused,
                     tc_tensor *outs) {
  TC_TRY
  std::vector<at::Tensor> o, i, go;
  for (int k = 0; k < n_outputs; k++) o.push_back(T(outputs[k]));
  for (int k = 0; k < n_inputs; k++) i.push_back(T(inputs[k]));
  if (grad_outputs)
    for (int k = 0; k < n_outputs; k++) go.push_back(grad_outputs[k] ? T(grad_outputs[k]) : at::Tensor());
  auto r = torch::autograd::grad(o, i, go, retain_graph ? c10::optional<bool>(true) : c10::nullopt,
                                 create_graph != 0, allow_unused != 0);
  for (int k = 0; k < n_inputs; k++) outs[k] = r[k].defined() ? wrap(r[k]) : nullptr;
  TC_CATCH
}
int tc_clip_grad_norm(const tc_tensor *params, int n, double max_norm, double norm_type, double *total) {
  TC_TRY
  std::vector<at::Tensor> ps;
  for (int k = 0; k < n; k++) ps.push_back(T(params[k]));
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  // torch.nn.utils.clip_grad_norm_'s foreach path: the per-gradient norms in one call, their norm, one
  // clip coefficient multiplied in with one call; torch::nn::utils::clip_grad_norm_ (below, and
  // LibTorch before 2.1) dispatches a norm and a mul_ per parameter. The same ops on each tensor, so
  // the same numbers. One device and dtype only; mixed gradients take the per-parameter path.
  std::vector<at::Tensor> grads;
  for (const auto &p : ps)
    if (p.grad().defined()) grads.push_back(p.grad());
  bool uniform = !grads.empty();
  for (const auto &g : grads)
    uniform = uniform && g.device() == grads[0].device() && g.scalar_type() == grads[0].scalar_type();
  if (uniform) {
    at::Tensor norm = at::linalg_vector_norm(at::stack(at::_foreach_norm(grads, norm_type)), norm_type);
    at::Tensor coef = at::clamp(max_norm / (norm + 1e-6), c10::nullopt, 1.0);
    at::_foreach_mul_(grads, coef);
    *total = norm.item<double>();
    return 0;
  }
#endif
  *total = torch::nn::utils::clip_grad_norm_(ps, max_norm, norm_type);
  TC_CATCH
}

// ---- generators ----
int tc_generator_new(uint64_t seed, int dev_type, int dev_index, tc_generator *out) {
  TC_TRY
  at::Generator g;
  if (dev_type == TC_DEVICE_CUDA) {
    // A fresh CUDA generator without CUDA headers: clone the device default, then reseed.
    g = at::globalContext().defaultGenerator(device(dev_type, dev_index)).clone();
  } else {
    g = at::detail::createCPUGenerator(seed);
  }
  {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  *out = new tc_generator_s{g};
  TC_CATCH
}
void tc_generator_free(tc_generator g) { delete g; }
int tc_generator_set_seed(tc_generator g, uint64_t seed) {
  TC_TRY
  std::lock_guard<std::mutex> lock(g->gen.mutex());
  g->gen.set_current_seed(seed);
  TC_CATCH
}
int tc_generator_get_state(tc_generator g, tc_tensor *out) {
  TC_TRY
  std::lock_guard<std::mutex> lock(g->gen.mutex());
  *out = wrap(g->gen.get_state());
  TC_CATCH
}
int tc_generator_set_state(tc_generator g, tc_tensor state) {
  TC_TRY
  std::lock_guard<std::mutex> lock(g->gen.mutex());
  g->gen.set_state(T(state));
  TC_CATCH
}
int tc_default_generator_get_state(tc_tensor *out) {
  TC_TRY
  auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  *out = wrap(g.get_state());
  TC_CATCH
}
int tc_default_generator_set_state(tc_tensor state) {
  TC_TRY
  auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(T(state));
  TC_CATCH
}

// ---- AdamW ----
int tc_adamw_new(const tc_tensor *params, const int *group_of, int n_params, const double *lrs,
                 const double *wds, int n_groups, double beta1, double beta2, double eps, int amsgrad,
                 tc_optimizer *out) {
  TC_TRY
  std::vector<std::vector<at::Tensor>> grouped(n_groups);
  auto o = std::make_unique<tc_optimizer_s>();
  for (int k = 0; k < n_params; k++) {
    int g = group_of[k];
    if (g < 0 || g >= n_groups) throw std::invalid_argument("tc_adamw_new: parameter group out of range");
    grouped[g].push_back(T(params[k]));
    o->params.push_back(T(params[k]));
    o->group_of.push_back(g);
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (int g = 0; g < n_groups; g++) {
    auto opts = std::make_unique<torch::optim::AdamWOptions>(lrs[g]);
    opts->betas(std::make_tuple(beta1, beta2)).eps(eps).weight_decay(wds[g]).amsgrad(amsgrad != 0);
    groups.emplace_back(grouped[g], std::move(opts));
  }
  torch::optim::AdamWOptions defaults(n_groups ? lrs[0] : 1e-3);
  defaults.betas(std::make_tuple(beta1, beta2)).eps(eps).weight_decay(n_groups ? wds[0] : 1e-2).amsgrad(amsgrad != 0);
  o->opt = std::make_unique<torch::optim::AdamW>(groups, defaults);
  *out = o.release();
  TC_CATCH
}
void tc_optimizer_free(tc_optimizer o) { delete o; }
int tc_adamw_set_fused(tc_optimizer o, int fused) {
  TC_TRY o->fused = fused != 0;
  TC_CATCH
}
// torch.optim.AdamW(fused=True): one _fused_adamw_ kernel per parameter group, device and dtype
// instead of torch::optim::AdamW's ~7 ops per parameter (the CPU kernel exists from 2.4 on). It
// reads and writes the same per-parameter state (step, exp_avg, exp_avg_sq), so checkpoints and
// state export are unchanged, and it computes the same update (the parity tests hold it to the
// reference's numbers). amsgrad, and LibTorch before 2.4, take the per-parameter loop.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
static bool fused_adamw_step(tc_optimizer o) {
  auto &state = o->opt->state();
  for (auto &group : o->opt->param_groups())
    if (static_cast<torch::optim::AdamWOptions &>(group.options()).amsgrad()) return false;
  for (auto &group : o->opt->param_groups()) {
    auto &opts = static_cast<torch::optim::AdamWOptions &>(group.options());
    struct Bucket {
      at::Device device;
      at::ScalarType dtype;
      std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
      // The kernel only reads the step counts: one scalar tensor per distinct count (normally one).
      std::map<int64_t, at::Tensor> step_values;
    };
    std::vector<Bucket> buckets;
    for (auto &p : group.params()) {
      if (!p.grad().defined()) continue;
      if (p.grad().is_sparse()) throw std::invalid_argument("AdamW does not support sparse gradients");
      auto it = state.find(state_key(p));
      if (it == state.end()) {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(0);
        s->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        s->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = state.emplace(state_key(p), std::move(s)).first;
      }
      auto &s = static_cast<torch::optim::AdamWParamState &>(*it->second);
      s.step(s.step() + 1);
      Bucket *b = nullptr;
      for (auto &c : buckets)
        if (c.device == p.device() && c.dtype == p.scalar_type()) b = &c;
      if (!b) {
        buckets.push_back(Bucket{p.device(), p.scalar_type(), {}, {}, {}, {}, {}, {}});
        b = &buckets.back();
      }
      b->params.push_back(p);
      b->grads.push_back(p.grad());
      b->exp_avgs.push_back(s.exp_avg());
      b->exp_avg_sqs.push_back(s.exp_avg_sq());
      auto step = b->step_values.find(s.step());
      if (step == b->step_values.end())
        step = b->step_values.emplace(s.step(), at::scalar_tensor(static_cast<double>(s.step()),
                                                                  at::TensorOptions().dtype(at::kFloat).device(p.device()))).first;
      b->steps.push_back(step->second);
    }
    for (auto &b : buckets)
      at::_fused_adamw_(b.params, b.grads, b.exp_avgs, b.exp_avg_sqs, {}, b.steps, opts.lr(),
                        std::get<0>(opts.betas()), std::get<1>(opts.betas()), opts.weight_decay(), opts.eps(),
                        /*amsgrad=*/false, /*maximize=*/false);
  }
  return true;
}
#endif

int tc_optimizer_step(tc_optimizer o) {
  TC_TRY
  at::NoGradGuard guard;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (o->fused && fused_adamw_step(o)) return 0;
#endif
  o->opt->step();
  TC_CATCH
}
int tc_optimizer_zero_grad(tc_optimizer o, int set_to_none) {
  TC_TRY
  for (auto &p : o->params) {
    auto &g = p.mutable_grad();
    if (!g.defined()) continue;
    if (set_to_none) g = at::Tensor();
    else { g = g.detach(); g.zero_(); }
  }
  TC_CATCH
}
static torch::optim::AdamWOptions &group_options(tc_optimizer o, int group) {
  auto &groups = o->opt->param_groups();
  if (group < 0 || group >= (int)groups.size()) throw std::invalid_argument("optimizer group out of range");
  return static_cast<torch::optim::AdamWOptions &>(groups[group].options());
}
int tc_optimizer_set_lr(tc_optimizer o, int group, double lr) {
  TC_TRY group_options(o, group).lr(lr);
  TC_CATCH
}
int tc_optimizer_get_lr(tc_optimizer o, int group, double *out) {
  TC_TRY *out = group_options(o, group).lr();
  TC_CATCH
}
int tc_adamw_get_state(tc_optimizer o, int i, int *has_state, int64_t *step, tc_tensor *exp_avg,
                       tc_tensor *exp_avg_sq, tc_tensor *max_exp_avg_sq) {
  TC_TRY
  if (i < 0 || i >= (int)o->params.size()) throw std::invalid_argument("parameter index out of range");
  auto &state = o->opt->state();
  auto it = state.find(state_key(o->params[i]));
  *has_state = it != state.end();
  *exp_avg = *exp_avg_sq = *max_exp_avg_sq = nullptr;
  if (!*has_state) return 0;
  auto &s = static_cast<torch::optim::AdamWParamState &>(*it->second);
  *step = s.step();
  *exp_avg = wrap(s.exp_avg().clone());
  *exp_avg_sq = wrap(s.exp_avg_sq().clone());
  if (s.max_exp_avg_sq().defined()) *max_exp_avg_sq = wrap(s.max_exp_avg_sq().clone());
  TC_CATCH
}
int tc_adamw_set_state(tc_optimizer o, int i, int64_t step, tc_tensor exp_avg, tc_tensor exp_avg_sq,
                       tc_tensor max_exp_avg_sq) {
  TC_TRY
  if (i < 0 || i >= (int)o->params.size()) throw std::invalid_argument("parameter index out of range");
  auto &p = o->params[i];
  auto check = [&](const at::Tensor &t, const char *what) {
    if (!t.sizes().equals(p.sizes()))
      throw std::invalid_argument(std::string("optimizer state ") + what + " has shape " +
                                  c10::str(t.sizes()) + ", parameter has " + c10::str(p.sizes()));
    return t.to(p.device(), p.scalar_type()).clone();
  };
  auto s = std::make_unique<torch::optim::AdamWParamState>();
  s->step(step);
  s->exp_avg(check(T(exp_avg), "exp_avg"));
  s->exp_avg_sq(check(T(exp_avg_sq), "exp_avg_sq"));
  if (max_exp_avg_sq) s->max_exp_avg_sq(check(T(max_exp_avg_sq), "max_exp_avg_sq"));
  else if (static_cast<torch::optim::AdamWOptions &>(o->opt->param_groups()[o->group_of[i]].options()).amsgrad())
    s->max_exp_avg_sq(at::zeros_like(p));
  o->opt->state()[state_key(p)] = std::move(s);
  TC_CATCH
}

// ---- .pth ----
static void flatten(const c10::IValue &v, const std::string &prefix,
                    std::vector<std::pair<std::string, at::Tensor>> &out) {
  if (v.isTensor()) {
    out.emplace_back(prefix, v.toTensor());
    return;
  }
  if (v.isGenericDict()) {
    for (auto &kv : v.toGenericDict()) {
      if (!kv.key().isString())
        throw std::invalid_argument("key under '" + prefix + "' is not a string (" + kv.key().tagKind() + ")");
      std::string k = kv.key().toStringRef();
      if (k == kPickleStateKey) continue;
      flatten(kv.value(), prefix.empty() ? k : prefix + "." + k, out);
    }
    return;
  }
  throw std::invalid_argument("entry '" + (prefix.empty() ? std::string("<root>") : prefix) + "' is a " +
                              v.tagKind() + ", not a tensor; only dicts of tensors can be imported");
}

int tc_pth_load(const char *path, tc_named_tensors *out) {
  out->count = 0;
  out->names = nullptr;
  out->tensors = nullptr;
  TC_TRY
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(std::string("cannot open ") + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  c10::IValue v = pth_unpickle(bytes);
  std::vector<std::pair<std::string, at::Tensor>> flat;
  flatten(v, "", flat);
  out->count = (int64_t)flat.size();
  out->names = (char **)calloc(flat.size() + 1, sizeof(char *));
  out->tensors = (tc_tensor *)calloc(flat.size() + 1, sizeof(tc_tensor));
  for (size_t k = 0; k < flat.size(); k++) {
    out->names[k] = strdup(flat[k].first.c_str());
    out->tensors[k] = wrap(flat[k].second);
  }
  TC_CATCH
}
void tc_named_tensors_free(tc_named_tensors *list) {
  if (!list) return;
  for (int64_t k = 0; k < list->count; k++) {
    free(list->names[k]);
    tc_free(list->tensors[k]);
  }
  free(list->names);
  free(list->tensors);
  list->count = 0;
  list->names = nullptr;
  list->tensors = nullptr;
}
int tc_pth_save(const char *path, const char *const *names, const tc_tensor *tensors, int64_t n) {
  TC_TRY
  c10::Dict<std::string, at::Tensor> dict;
  for (int64_t k = 0; k < n; k++) dict.insert(names[k], T(tensors[k]).detach().to(at::kCPU).contiguous());
  // torch.save's zip layout. Dicts are written without the type tag torch::pickle_save adds
  // (torch.jit._pickle.restore_type_tag), which torch.load refuses under weights_only=True, the
  // default since torch 2.6.
  std::vector<char> data;
  torch::jit::Pickler pickler([&](const char *b, size_t len) { data.insert(data.end(), b, b + len); }, nullptr,
                              nullptr, nullptr, nullptr, /*tag_aggregates=*/false);
  pickler.protocol();
  pickler.pushIValue(c10::IValue(dict));
  pickler.stop();
  caffe2::serialize::PyTorchStreamWriter writer{std::string(path)};
  torch::jit::writeArchiveAndTensors("data", data.data(), data.size(), pickler.tensorData(), writer);
  writer.writeEndOfFile();
  TC_CATCH
}

}  // extern "C"
