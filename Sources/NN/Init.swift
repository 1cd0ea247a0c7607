// Init.swift — creating parameters with PyTorch's default initialisers (torch.nn.init), or with
// uninitialised storage under ParameterInit.uninitialized.
import Torch

public enum Initializer: Sendable {
    case zeros
    case ones
    case uniform(Double)  // U(-bound, bound)
    case normal(std: Double)
}

/// A new trainable parameter of `shape`, filled by `initializer` from `RandomContext.generator`
/// when one is set (so a build is reproducible whatever else runs), else the global generator.
public func makeParameter(_ shape: [Int], _ initializer: Initializer, dtype: DType = .float32) throws -> Tensor {
    let t: Tensor
    if ParameterInit.mode == .uninitialized {
        t = try Tensor.empty(shape, dtype: dtype)
    } else {
        switch initializer {
        case .zeros: t = try Tensor.zeros(shape, dtype: dtype)
        case .ones: t = try Tensor.ones(shape, dtype: dtype)
        case .uniform(let b):
            t = try Tensor.empty(shape, dtype: dtype)
            try t.uniform_(-b, b, generator: RandomContext.generator)
        case .normal(let std):
            t = try Tensor.empty(shape, dtype: dtype)
            try t.normal_(mean: 0, std: std, generator: RandomContext.generator)
        }
    }
    return try t.requiresGrad_(true)
}

/// The bound 1/√fan_in that kaiming_uniform(a=√5) and the default bias init both use.
public func fanInBound(_ fanIn: Int) -> Double { fanIn > 0 ? 1.0 / Double(fanIn).squareRoot() : 0 }
