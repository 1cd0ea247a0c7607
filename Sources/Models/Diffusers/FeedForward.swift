// FeedForward.swift — mirrors diffusers.models.attention.FeedForward with GEGLU / GELU
// (net.0 = activation with `proj`, net.1 = Dropout, net.2 = Linear).
import NN
import Torch

/// diffusers.models.activations.GEGLU / GELU: a projection followed by the gate.
public final class GatedProjection: Module, UnaryLayer {
    public enum Kind: String, Sendable { case geglu, gelu, geluTanh = "gelu-approximate" }
    public let proj: Linear
    public let kind: Kind

    public init(_ dimIn: Int, _ dimOut: Int, kind: Kind, bias: Bool = true) throws {
        self.kind = kind
        proj = try Linear(dimIn, kind == .geglu ? dimOut * 2 : dimOut, bias: bias)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let h = try proj(x)
        switch kind {
        case .geglu:
            let parts = try h.chunk(2, dim: -1)
            return try parts[0] * parts[1].gelu()
        case .gelu: return try h.gelu()
        case .geluTanh: return try h.gelu(approximateTanh: true)
        }
    }
}

public final class FeedForward: Module, UnaryLayer {
    public let net: Sequential

    public init(dim: Int, dimOut: Int? = nil, mult: Int = 4, dropout: Double = 0, activation: String = "geglu",
                innerDim: Int? = nil, bias: Bool = true) throws {
        guard let kind = GatedProjection.Kind(rawValue: activation) else {
            throw TorchError("FeedForward: unsupported activation_fn '\(activation)' (geglu, gelu, gelu-approximate)")
        }
        let inner = innerDim ?? dim * mult
        net = Sequential([try GatedProjection(dim, inner, kind: kind, bias: bias), Dropout(dropout),
                          try Linear(inner, dimOut ?? dim, bias: bias)])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try net(x) }
}
