// GradScaler.swift — dynamic loss scaling for float16 mixed precision, as torch.amp.GradScaler:
// the loss is multiplied by `scale` before backward; the gradients are unscaled before clipping;
// a step whose gradients hold Inf/NaN is skipped and the scale halves; after `growthInterval`
// good steps in a row it doubles.
import Torch

public final class GradScaler {
    public private(set) var scale: Double
    public private(set) var growthTracker = 0
    public let growthFactor: Double
    public let backoffFactor: Double
    public let growthInterval: Int

    public init(initScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
                growthInterval: Int = 2000) {
        scale = initScale
        self.growthFactor = growthFactor
        self.backoffFactor = backoffFactor
        self.growthInterval = growthInterval
    }

    public func scaled(_ loss: Tensor) throws -> Tensor { try loss * scale }

    /// Divides every gradient by the scale in place; returns false when any is not finite
    /// (the optimizer step must then be skipped).
    public func unscale(_ params: [Tensor]) throws -> Bool {
        try Torch.noGrad {
            // One flag per gradient, read back once (a device sync per gradient would stall CUDA).
            var flags: [Tensor] = []
            for p in params {
                guard let g = p.grad else { continue }
                try g.mul_(1 / scale)
                flags.append(try g.isfinite().all())
            }
            return try flags.isEmpty || Tensor.stack(flags, dim: 0).all().item() == 1
        }
    }

    /// Whether every gradient is finite (after a data-parallel sync, every rank gets the same answer).
    public static func allFinite(_ params: [Tensor]) throws -> Bool {
        try Torch.noGrad {
            let flags = try params.compactMap { try $0.grad?.isfinite().all() }
            return try flags.isEmpty || Tensor.stack(flags, dim: 0).all().item() == 1
        }
    }

    /// Updates the scale after a step (skipped or not).
    public func update(foundInf: Bool) {
        if foundInf {
            scale *= backoffFactor
            growthTracker = 0
        } else {
            growthTracker += 1
            if growthTracker == growthInterval {
                scale *= growthFactor
                growthTracker = 0
            }
        }
    }

    public func restore(scale: Double, growthTracker: Int) {
        self.scale = scale
        self.growthTracker = growthTracker
    }
}
