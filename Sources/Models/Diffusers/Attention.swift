// Attention.swift — mirrors diffusers.models.attention_processor.Attention with AttnProcessor2_0
// (diffusers 0.27): to_q/to_k/to_v/to_out.0, optional group_norm, residual and output rescale.
import NN
import Torch

public final class Attention: Module {
    public let group_norm: GroupNorm?
    public let to_q: Linear
    public let to_k: Linear
    public let to_v: Linear
    public let to_out: [Module]  // [Linear, Dropout] as nn.ModuleList
    public let heads: Int
    public let dimHead: Int
    public let scale: Double
    public let residualConnection: Bool
    public let rescaleOutputFactor: Double
    public let upcast: Bool

    public init(queryDim: Int, crossAttentionDim: Int? = nil, heads: Int = 8, dimHead: Int = 64, dropout: Double = 0,
                bias: Bool = false, outBias: Bool = true, upcastAttention: Bool = false, normNumGroups: Int? = nil,
                eps: Double = 1e-5, residualConnection: Bool = false, rescaleOutputFactor: Double = 1) throws {
        let inner = heads * dimHead
        self.heads = heads
        self.dimHead = dimHead
        scale = 1.0 / Double(dimHead).squareRoot()
        self.residualConnection = residualConnection
        self.rescaleOutputFactor = rescaleOutputFactor
        upcast = upcastAttention
        group_norm = try normNumGroups.map { try GroupNorm(numGroups: $0, numChannels: queryDim, eps: eps) }
        to_q = try Linear(queryDim, inner, bias: bias)
        to_k = try Linear(crossAttentionDim ?? queryDim, inner, bias: bias)
        to_v = try Linear(crossAttentionDim ?? queryDim, inner, bias: bias)
        to_out = [try Linear(inner, queryDim, bias: outBias), Dropout(dropout)]
    }

    /// (B, L, heads·d) → (B, heads, L, d)
    func splitHeads(_ x: Tensor) throws -> Tensor {
        let s = x.shape
        return try x.view([s[0], s[1], heads, dimHead]).transpose(1, 2)
    }

    /// Attention over already-projected tokens; exposed so reference/temporal variants can
    /// change what K/V attend to. q: (B, Lq, inner), k/v: (B, Lk, inner).
    public func attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor? = nil) throws -> Tensor {
        let b = q.shape[0], lq = q.shape[1]
        var (qh, kh, vh) = (try splitHeads(q), try splitHeads(k), try splitHeads(v))
        let dtype = qh.dtype
        if upcast { (qh, kh, vh) = (try qh.to(.float32), try kh.to(.float32), try vh.to(.float32)) }
        var o = try F.scaledDotProductAttention(qh, kh, vh, mask: mask, scale: scale)
        if upcast { o = try o.to(dtype) }
        return try o.transpose(1, 2).reshape([b, lq, heads * dimHead])
    }

    public func output(_ h: Tensor) throws -> Tensor {
        let lin = to_out[0] as! Linear, drop = to_out[1] as! Dropout
        return try drop(lin(h))
    }

    /// hidden: (B, L, C) or (B, C, H, W); context: (B, S, Cctx) or nil for self-attention.
    public func callAsFunction(_ hidden: Tensor, context: Tensor? = nil, mask: Tensor? = nil) throws -> Tensor {
        let residual = hidden
        var h = hidden
        let spatial = hidden.dim == 4 ? Array(hidden.shape) : nil
        if let s = spatial { h = try h.view([s[0], s[1], s[2] * s[3]]).transpose(1, 2) }
        if let gn = group_norm { h = try gn(h.transpose(1, 2)).transpose(1, 2) }
        let ctx = context ?? h
        var out = try output(attend(q: to_q(h), k: to_k(ctx), v: to_v(ctx), mask: mask))
        if let s = spatial { out = try out.transpose(-1, -2).reshape(s) }
        if residualConnection { out = try out + residual }
        return rescaleOutputFactor == 1 ? out : try out / rescaleOutputFactor
    }
}
