// Optimizer.swift — torch.optim.AdamW with parameter groups, learning-rate access and a state
// that can be exported and imported, so that a resumed run takes the identical next step.
import CTorch

public struct ParamGroup {
    public var params: [Tensor]
    public var lr: Double
    public var weightDecay: Double
    public init(params: [Tensor], lr: Double, weightDecay: Double) {
        self.params = params
        self.lr = lr
        self.weightDecay = weightDecay
    }
}

/// The optimizer state of one parameter (AdamW's `state[p]`).
public struct AdamWParamState {
    public var step: Int
    public var expAvg: Tensor
    public var expAvgSq: Tensor
    public var maxExpAvgSq: Tensor?

    public init(step: Int, expAvg: Tensor, expAvgSq: Tensor, maxExpAvgSq: Tensor? = nil) {
        self.step = step
        self.expAvg = expAvg
        self.expAvgSq = expAvgSq
        self.maxExpAvgSq = maxExpAvgSq
    }
}

public final class AdamW: @unchecked Sendable {
    let handle: OpaquePointer
    /// Parameters in creation order (group by group); state indices refer to this order.
    public let params: [Tensor]
    public let groupCount: Int

    /// `fused`: step with LibTorch's fused AdamW kernel (torch.optim.AdamW(fused=True)) where it has
    /// one (2.4 and later; not with amsgrad), else the per-parameter loop of torch::optim::AdamW.
    /// Both read and write the same state and compute the same update.
    public init(groups: [ParamGroup], betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                amsgrad: Bool = false, fused: Bool = true) throws {
        var ps: [Tensor] = [], groupOf: [Int32] = []
        for (g, group) in groups.enumerated() {
            ps += group.params
            groupOf += Array(repeating: Int32(g), count: group.params.count)
        }
        let hs: [OpaquePointer?] = ps.map { $0.handle }
        let lrs = groups.map(\.lr), wds = groups.map(\.weightDecay)
        var out: OpaquePointer?
        try check(tc_adamw_new(hs, groupOf, Int32(hs.count), lrs, wds, Int32(groups.count), betas.0, betas.1,
                               eps, amsgrad ? 1 : 0, &out))
        handle = out!
        params = ps
        groupCount = groups.count
        try check(tc_adamw_set_fused(handle, fused ? 1 : 0))
    }

    public convenience init(params: [Tensor], lr: Double = 1e-3, weightDecay: Double = 1e-2,
                            betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8) throws {
        try self.init(groups: [ParamGroup(params: params, lr: lr, weightDecay: weightDecay)], betas: betas, eps: eps)
    }

    deinit { tc_optimizer_free(handle) }

    public func step() throws { try check(tc_optimizer_step(handle)) }

    public func zeroGrad(setToNone: Bool = true) throws { try check(tc_optimizer_zero_grad(handle, setToNone ? 1 : 0)) }

    public func setLearningRate(_ lr: Double, group: Int? = nil) throws {
        for g in group.map({ [$0] }) ?? Array(0..<groupCount) {
            try check(tc_optimizer_set_lr(handle, Int32(g), lr))
        }
    }

    public func learningRate(group: Int = 0) throws -> Double {
        var lr = 0.0
        try check(tc_optimizer_get_lr(handle, Int32(group), &lr))
        return lr
    }

    /// State of parameter `index` (nil before its first step). The tensors are copies.
    public func state(of index: Int) throws -> AdamWParamState? {
        var has: Int32 = 0, step: Int64 = 0
        var a: OpaquePointer?, b: OpaquePointer?, c: OpaquePointer?
        try check(tc_adamw_get_state(handle, Int32(index), &has, &step, &a, &b, &c))
        guard has != 0, let a, let b else { return nil }
        return AdamWParamState(step: Int(step), expAvg: Tensor(owning: a), expAvgSq: Tensor(owning: b),
                               maxExpAvgSq: c.map { Tensor(owning: $0) })
    }

    public func setState(_ s: AdamWParamState, of index: Int) throws {
        try check(tc_adamw_set_state(handle, Int32(index), Int64(s.step), s.expAvg.handle, s.expAvgSq.handle,
                                     s.maxExpAvgSq?.handle))
    }

    /// Flat name → tensor export ("<i>.exp_avg", "<i>.exp_avg_sq", "<i>.step"), for a safetensors file.
    public func exportState() throws -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for i in params.indices {
            guard let s = try state(of: i) else { continue }
            out.append(("\(i).exp_avg", s.expAvg))
            out.append(("\(i).exp_avg_sq", s.expAvgSq))
            out.append(("\(i).step", try Tensor([Int64(s.step)], shape: [])))
            if let m = s.maxExpAvgSq { out.append(("\(i).max_exp_avg_sq", m)) }
        }
        return out
    }

    /// Restores what `exportState` wrote; errors name the missing or mismatched entry.
    public func importState(_ entries: [String: Tensor]) throws {
        for i in params.indices {
            guard let stepT = entries["\(i).step"] else { continue }
            guard let a = entries["\(i).exp_avg"], let b = entries["\(i).exp_avg_sq"] else {
                throw TorchError("optimizer state for parameter \(i) has a step but lacks exp_avg/exp_avg_sq")
            }
            try setState(AdamWParamState(step: try stepT.itemInt(), expAvg: a, expAvgSq: b,
                                         maxExpAvgSq: entries["\(i).max_exp_avg_sq"]), of: i)
        }
    }
}
