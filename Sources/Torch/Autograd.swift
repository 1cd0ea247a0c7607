// Autograd.swift — torch.autograd: requires_grad, backward, .grad, autograd.grad, no_grad and inference_mode scopes.
import CTorch

extension Tensor {
    public var requiresGrad: Bool {
        var r: Int32 = 0
        _ = tc_requires_grad(handle, &r)
        return r != 0
    }

    /// Sets requires_grad in place and returns self, like `tensor.requires_grad_()`.
    @discardableResult
    public func requiresGrad_(_ flag: Bool = true) throws -> Tensor {
        try check(tc_set_requires_grad(handle, flag ? 1 : 0))
        return self
    }

    public var isLeaf: Bool {
        var r: Int32 = 0
        _ = tc_is_leaf(handle, &r)
        return r != 0
    }

    /// Whether this tensor was made in inference mode (`Tensor.is_inference()`).
    public var isInference: Bool {
        var r: Int32 = 0
        _ = tc_is_inference_tensor(handle, &r)
        return r != 0
    }

    /// Accumulates gradients into the leaves. `gradient` may be omitted for a scalar.
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false, createGraph: Bool = false) throws {
        try check(tc_backward(handle, gradient?.handle, retainGraph ? 1 : 0, createGraph ? 1 : 0))
    }

    /// The accumulated gradient, or nil (None).
    public var grad: Tensor? {
        var out: OpaquePointer?
        guard tc_grad(handle, &out) == 0, let h = out else { return nil }
        return Tensor(owning: h)
    }

    /// Replaces the gradient (nil sets it to None).
    public func setGrad(_ g: Tensor?) throws { try check(tc_set_grad(handle, g?.handle)) }

    /// Zeroes the gradient in place if there is one.
    public func zeroGrad() throws { try check(tc_zero_grad(handle)) }
}

public enum Autograd {
    /// torch.autograd.grad. Entries are nil for inputs that do not affect the outputs (allowUnused).
    public static func grad(outputs: [Tensor], inputs: [Tensor], gradOutputs: [Tensor?]? = nil,
                            retainGraph: Bool = false, createGraph: Bool = false,
                            allowUnused: Bool = false) throws -> [Tensor?] {
        let o: [OpaquePointer?] = outputs.map { $0.handle }
        let i: [OpaquePointer?] = inputs.map { $0.handle }
        let g: [OpaquePointer?]? = gradOutputs.map { $0.map { $0?.handle } }
        var outs = [OpaquePointer?](repeating: nil, count: inputs.count)
        try withExtendedLifetime((outputs, inputs, gradOutputs)) {
            try withOptionalPointer(g) { gp in
                try check(tc_autograd_grad(o, Int32(o.count), i, Int32(i.count), gp, retainGraph ? 1 : 0,
                                           createGraph ? 1 : 0, allowUnused ? 1 : 0, &outs))
            }
        }
        return outs.map { $0.map { Tensor(owning: $0) } }
    }

    /// Rescales the gradients so that their joint norm is at most `maxNorm`; returns the norm
    /// before clipping (torch.nn.utils.clip_grad_norm_).
    @discardableResult
    public static func clipGradNorm(_ params: [Tensor], maxNorm: Double, normType: Double = 2) throws -> Double {
        let hs: [OpaquePointer?] = params.map { $0.handle }
        var total = 0.0
        try withExtendedLifetime(params) {
            try check(tc_clip_grad_norm(hs, Int32(hs.count), maxNorm, normType, &total))
        }
        return total
    }
}

extension Torch {
    /// Runs `body` with autograd recording off on this thread. The body is synchronous on
    /// purpose: grad mode is per thread, and a suspension could resume elsewhere.
    public static func noGrad<R>(_ body: () throws -> R) rethrows -> R {
        try withGradEnabled(false, body)
    }

    public static func withGradEnabled<R>(_ enabled: Bool, _ body: () throws -> R) rethrows -> R {
        var previous: Int32 = 1
        _ = tc_set_grad_enabled(enabled ? 1 : 0, &previous)
        defer { _ = tc_set_grad_enabled(previous, nil) }
        return try body()
    }

    /// torch.inference_mode(): `body` runs with autograd off and without its bookkeeping (no version
    /// counters, no view tracking), so each op dispatches less. Tensors made inside are inference
    /// tensors: they can be read afterwards, but not saved for backward or updated in place outside
    /// inference mode (clone one to do that). Synchronous for the same reason as `noGrad`.
    public static func inferenceMode<R>(_ body: () throws -> R) throws -> R {
        var guardHandle: UnsafeMutableRawPointer?
        try check(tc_inference_mode_enter(&guardHandle))
        defer { _ = tc_inference_mode_exit(guardHandle) }
        return try body()
    }

    public static var isInferenceModeEnabled: Bool {
        var r: Int32 = 0
        _ = tc_is_inference_mode_enabled(&r)
        return r != 0
    }

    public static var isGradEnabled: Bool {
        var r: Int32 = 0
        _ = tc_is_grad_enabled(&r)
        return r != 0
    }
}
