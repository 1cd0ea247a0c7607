// EMA.swift — exponential moving average of the trainable weights, as diffusers'
// training_utils.EMAModel (decay warm-up (1 + step) / (10 + step), capped by `decay`, floored by
// `min_decay`, starting after `update_after_step`).
import NN
import Torch

public final class EMAModel {
    /// Shadow copies, keyed like the parameters they follow.
    public private(set) var shadow: [(String, Tensor)]
    public let decay: Double
    public let minDecay: Double
    public let updateAfterStep: Int
    public private(set) var optimizationStep = 0

    public init(parameters: [(String, Tensor)], decay: Double = 0.9999, minDecay: Double = 0,
                updateAfterStep: Int = 0) throws {
        shadow = try Torch.noGrad { try parameters.map { ($0.0, try $0.1.detach().clone()) } }
        self.decay = decay
        self.minDecay = minDecay
        self.updateAfterStep = updateAfterStep
    }

    public func currentDecay(_ optimizationStep: Int) -> Double {
        let step = max(0, optimizationStep - updateAfterStep - 1)
        if step <= 0 { return 0 }
        let d = (1 + Double(step)) / (10 + Double(step))
        return max(min(d, decay), minDecay)
    }

    /// One update after an optimizer step: shadow = d·shadow + (1 − d)·param.
    public func step(_ parameters: [(String, Tensor)]) throws {
        optimizationStep += 1
        let d = currentDecay(optimizationStep)
        try Torch.noGrad {
            for ((name, s), (pname, p)) in zip(shadow, parameters) {
                guard name == pname else { throw TorchError("EMA: parameter order changed (\(name) vs \(pname))") }
                try s.emaUpdate_(p, decay: d)
            }
        }
    }

    /// State for checkpoints: the shadow tensors plus the step counter.
    public func stateDict() throws -> [(String, Tensor)] {
        shadow + [("__ema_optimization_step__", try Tensor([Int64(optimizationStep)], shape: []))]
    }

    public func load(_ state: [String: Tensor]) throws {
        try Torch.noGrad {
            for (name, s) in shadow {
                guard let t = state[name] else { throw TorchError("EMA state lacks \(name)") }
                try s.copy_(t)
            }
        }
        optimizationStep = try state["__ema_optimization_step__"]?.itemInt() ?? 0
    }
}
