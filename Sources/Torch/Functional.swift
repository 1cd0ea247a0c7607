// Functional.swift — torch.nn.functional: layers without state, losses and attention.
import CTorch

/// torch.nn.functional.
public enum F {
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) throws -> Tensor {
        try make { tc_linear(x.handle, weight.handle, bias?.handle, $0) }
    }

    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                              padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1), groups: Int = 1) throws -> Tensor {
        let s = [Int64(stride.0), Int64(stride.1)], p = [Int64(padding.0), Int64(padding.1)]
        let d = [Int64(dilation.0), Int64(dilation.1)]
        return try make { tc_conv2d(x.handle, weight.handle, bias?.handle, s, p, d, Int64(groups), $0) }
    }

    public static func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                                       padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0),
                                       groups: Int = 1, dilation: (Int, Int) = (1, 1)) throws -> Tensor {
        let s = [Int64(stride.0), Int64(stride.1)], p = [Int64(padding.0), Int64(padding.1)]
        let op = [Int64(outputPadding.0), Int64(outputPadding.1)], d = [Int64(dilation.0), Int64(dilation.1)]
        return try make { tc_conv_transpose2d(x.handle, weight.handle, bias?.handle, s, p, op, Int64(groups), d, $0) }
    }

    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        // LibTorch's CPU GroupNorm backward segfaults (null dX in its channels-last kernel) when the
        // input takes no gradient, the weight does and the input's strides look channels-last (a
        // frame-major view, e.g. a frozen UNet feeding trainable temporal modules, stage 3; also
        // reproduced in PyTorch 2.13). Such an input is made contiguous first, only when a backward
        // can follow (grad mode on), so that no-grad passes keep LibTorch's kernel choice.
        let input = Torch.isGradEnabled && !x.requiresGrad && (weight?.requiresGrad ?? false) ? try x.contiguous() : x
        return try make { tc_group_norm(input.handle, Int64(groups), weight?.handle, bias?.handle, eps, $0) }
    }

    public static func layerNorm(_ x: Tensor, normalizedShape: [Int], weight: Tensor?, bias: Tensor?, eps: Double) throws -> Tensor {
        let s = i64(normalizedShape)
        return try make { tc_layer_norm(x.handle, s, Int32(s.count), weight?.handle, bias?.handle, eps, $0) }
    }

    /// In training mode the running statistics are updated in place.
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                                 training: Bool, momentum: Double = 0.1, eps: Double = 1e-5) throws -> Tensor {
        try make {
            tc_batch_norm(x.handle, weight?.handle, bias?.handle, runningMean?.handle, runningVar?.handle,
                          training ? 1 : 0, momentum, eps, $0)
        }
    }

    public static func dropout(_ x: Tensor, p: Double, training: Bool) throws -> Tensor {
        if p == 0 || !training { return x }
        return try make { tc_dropout(x.handle, p, training ? 1 : 0, $0) }
    }

    public enum InterpolationMode: Int32, Sendable { case nearest = 0, bilinear, bicubic, nearestExact, area }

    /// F.interpolate over (N, C, H, W) with either an output size or a scale factor.
    public static func interpolate(_ x: Tensor, size: (Int, Int)? = nil, scaleFactor: (Double, Double)? = nil,
                                   mode: InterpolationMode = .nearest, alignCorners: Bool = false,
                                   antialias: Bool = false) throws -> Tensor {
        guard (size == nil) != (scaleFactor == nil) else {
            throw TorchError("interpolate: give exactly one of size and scaleFactor")
        }
        let s = size.map { [Int64($0.0), Int64($0.1)] }
        let f = scaleFactor.map { [$0.0, $0.1] }
        return try make { out in
            withOptionalPointer(s) { sp in
                withOptionalPointer(f) { fp in
                    tc_interpolate(x.handle, sp, fp, mode.rawValue, alignCorners ? 1 : 0, antialias ? 1 : 0, out)
                }
            }
        }
    }

    public static func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                                 ceilMode: Bool = false, countIncludePad: Bool = true) throws -> Tensor {
        let k = [Int64(kernel.0), Int64(kernel.1)], st = stride ?? kernel
        let s = [Int64(st.0), Int64(st.1)], p = [Int64(padding.0), Int64(padding.1)]
        return try make { tc_avg_pool2d(x.handle, k, s, p, ceilMode ? 1 : 0, countIncludePad ? 1 : 0, $0) }
    }

    public static func maxPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                                 ceilMode: Bool = false) throws -> Tensor {
        let k = [Int64(kernel.0), Int64(kernel.1)], st = stride ?? kernel
        let s = [Int64(st.0), Int64(st.1)], p = [Int64(padding.0), Int64(padding.1)]
        return try make { tc_max_pool2d(x.handle, k, s, p, ceilMode ? 1 : 0, $0) }
    }

    public static func adaptiveAvgPool2d(_ x: Tensor, outputSize: (Int, Int)) throws -> Tensor {
        let s = [Int64(outputSize.0), Int64(outputSize.1)]
        return try make { tc_adaptive_avg_pool2d(x.handle, s, $0) }
    }

    public static func embedding(_ indices: Tensor, weight: Tensor) throws -> Tensor {
        try make { tc_embedding(weight.handle, indices.handle, $0) }
    }

    public enum LossReduction: Int32, Sendable { case none = 0, mean = 1, sum = 2 }

    public static func mseLoss(_ a: Tensor, _ b: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
        try make { tc_mse_loss(a.handle, b.handle, reduction.rawValue, $0) }
    }
    public static func l1Loss(_ a: Tensor, _ b: Tensor, reduction: LossReduction = .mean) throws -> Tensor {
        try make { tc_l1_loss(a.handle, b.handle, reduction.rawValue, $0) }
    }
    public static func smoothL1Loss(_ a: Tensor, _ b: Tensor, reduction: LossReduction = .mean, beta: Double = 1) throws -> Tensor {
        try make { tc_smooth_l1_loss(a.handle, b.handle, reduction.rawValue, beta, $0) }
    }
    /// `target` holds int64 class indices, or class probabilities shaped like `logits`.
    public static func crossEntropy(_ logits: Tensor, _ target: Tensor, reduction: LossReduction = .mean,
                                    labelSmoothing: Double = 0) throws -> Tensor {
        try make { tc_cross_entropy(logits.handle, target.handle, reduction.rawValue, labelSmoothing, $0) }
    }

    /// softmax(q kᵀ · scale + mask) v over (..., L, E) tensors (F.scaled_dot_product_attention).
    /// `scale` defaults to 1/√E. Uses LibTorch's fused kernel where the version has one.
    public static func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, mask: Tensor? = nil,
                                                 scale: Double? = nil, isCausal: Bool = false) throws -> Tensor {
        let e = q.shape.last ?? 1
        let s = scale ?? 1.0 / Double(e).squareRoot()
        return try make { tc_attention(q.handle, k.handle, v.handle, mask?.handle, s, isCausal ? 1 : 0, $0) }
    }
}

@inline(__always)
func withOptionalPointer<T, R>(_ values: [T]?, _ body: (UnsafePointer<T>?) throws -> R) rethrows -> R {
    guard let values else { return try body(nil) }
    return try values.withUnsafeBufferPointer { try body($0.baseAddress) }
}
