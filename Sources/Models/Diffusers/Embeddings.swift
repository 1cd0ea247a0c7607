// Embeddings.swift — mirrors diffusers.models.embeddings (diffusers 0.27): `get_timestep_embedding`,
// `Timesteps` (sinusoidal projection, no weights) and `TimestepEmbedding` (linear_1 → act → linear_2),
// plus diffusers.models.activations.get_activation, which those modules and the UNet share.
import Foundation
import NN
import Torch

/// diffusers' `get_activation(name)`: the element-wise activations configs may name.
public enum DiffusersActivation: String, Codable, Sendable {
    case silu, swish, mish, gelu, relu

    public init(named name: String) throws {
        guard let a = DiffusersActivation(rawValue: name) else {
            throw TorchError("unsupported activation function '\(name)' (silu, swish, mish, gelu, relu)")
        }
        self = a
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        switch self {
        case .silu, .swish: return try x.silu()
        case .mish: return try x * x.softplus().tanh()
        case .gelu: return try x.gelu()
        case .relu: return try x.relu()
        }
    }
}

/// `get_timestep_embedding`: sinusoidal embedding of (N,) timesteps → (N, dim), float32.
/// The op order follows diffusers exactly: at t ≈ 1000 the sin/cos arguments are large, so a
/// different (even mathematically equal) order would move the result by float32 ulps × 1000.
public func sinusoidalTimestepEmbedding(_ timesteps: Tensor, dim: Int, flipSinToCos: Bool = false,
                                        downscaleFreqShift: Double = 1, scale: Double = 1,
                                        maxPeriod: Double = 10000) throws -> Tensor {
    guard timesteps.dim == 1 else {
        throw TorchError("timestep embedding: timesteps must be 1-D, got shape \(timesteps.shape)")
    }
    let half = dim / 2
    var exponent = try Tensor.arange(0, Double(half), dtype: .float32, device: timesteps.device) * -Foundation.log(maxPeriod)
    exponent = try exponent / (Double(half) - downscaleFreqShift)
    var emb = try timesteps.unsqueeze(1).to(.float32) * exponent.exp().unsqueeze(0)
    if scale != 1 { emb = try emb * scale }
    emb = flipSinToCos ? try Tensor.cat([emb.cos(), emb.sin()], dim: -1) : try Tensor.cat([emb.sin(), emb.cos()], dim: -1)
    if dim % 2 == 1 { emb = try emb.pad([0, 1, 0, 0]) }
    return emb
}

/// diffusers.models.embeddings.Timesteps: holds no weights (it is a module only so that the UNet's
/// `time_proj` exists as in PyTorch; it contributes no state-dict keys).
public final class Timesteps: Module {
    public let numChannels: Int
    public let flipSinToCos: Bool
    public let downscaleFreqShift: Double
    public let scale: Double

    public init(numChannels: Int, flipSinToCos: Bool, downscaleFreqShift: Double, scale: Double = 1) {
        self.numChannels = numChannels
        self.flipSinToCos = flipSinToCos
        self.downscaleFreqShift = downscaleFreqShift
        self.scale = scale
    }

    /// (N,) timesteps (any numeric dtype) → (N, numChannels) float32.
    public func callAsFunction(_ timesteps: Tensor) throws -> Tensor {
        try sinusoidalTimestepEmbedding(timesteps, dim: numChannels, flipSinToCos: flipSinToCos,
                                        downscaleFreqShift: downscaleFreqShift, scale: scale)
    }
}

/// diffusers.models.embeddings.TimestepEmbedding: `linear_1` → act → `linear_2` (→ optional post act),
/// with the optional `cond_proj` (LCM-style guidance embedding) added to the input first.
public final class TimestepEmbedding: Module {
    public let linear_1: Linear
    public let cond_proj: Linear?
    public let linear_2: Linear
    public let act: DiffusersActivation
    public let postAct: DiffusersActivation?

    public init(inChannels: Int, timeEmbedDim: Int, act: String = "silu", outDim: Int? = nil,
                postAct: String? = nil, condProjDim: Int? = nil, sampleProjBias: Bool = true) throws {
        linear_1 = try Linear(inChannels, timeEmbedDim, bias: sampleProjBias)
        cond_proj = try condProjDim.map { try Linear($0, inChannels, bias: false) }
        self.act = try DiffusersActivation(named: act)
        linear_2 = try Linear(timeEmbedDim, outDim ?? timeEmbedDim, bias: sampleProjBias)
        self.postAct = try postAct.map { try DiffusersActivation(named: $0) }
    }

    public func callAsFunction(_ sample: Tensor, condition: Tensor? = nil) throws -> Tensor {
        var h = sample
        if let condition {
            guard let cond_proj else {
                throw TorchError("TimestepEmbedding: a condition was given but the module has no cond_proj (time_cond_proj_dim)")
            }
            h = try h + cond_proj(condition)
        }
        h = try linear_2(act(linear_1(h)))
        return try postAct.map { try $0(h) } ?? h
    }
}
