// MotionEncoder.swift — mirrors PersonaLive's src.models.motion_encoder.encoder.MotEncoder (from
// X-NeMo): FAN_SA (src.models.motion_encoder.FAN_feature_extractor — a FAN hourglass with
// BatchNorm, plus three zero-init spatial self-attention blocks, each a
// FAN_temporal_feature_extractor.TemporalTransformer3DModel over diffusers PatchEmbed patches),
// then final_proj and a fixed 1-D sin-cos position embedding: a 224² face crop in [-1, 1] becomes
// 32 motion tokens × 16 channels.
import Foundation
import NN
import Torch

/// ReLU as a Sequential member (nn.ReLU(True) in the reference; no parameters).
private final class SequentialReLU: Module, UnaryLayer {
    func callAsFunction(_ x: Tensor) throws -> Tensor { try x.relu() }
}

/// FAN's ConvBlock: three pre-activated (BatchNorm, ReLU) 3×3 convs producing out/2, out/4 and
/// out/4 channels, concatenated, plus a residual (projected when the width changes).
public final class FANConvBlock: Module, UnaryLayer {
    public let bn1: BatchNorm2d
    public let conv1: Conv2d
    public let bn2: BatchNorm2d
    public let conv2: Conv2d
    public let bn3: BatchNorm2d
    public let conv3: Conv2d
    /// [BatchNorm (eps 1e-4 in FAN_feature_extractor), ReLU, 1×1 conv] when in ≠ out.
    public let downsample: Sequential?

    public init(_ inPlanes: Int, _ outPlanes: Int) throws {
        bn1 = try BatchNorm2d(inPlanes)
        conv1 = try Conv2d(inPlanes, outPlanes / 2, kernelSize: 3, padding: 1, bias: false)
        bn2 = try BatchNorm2d(outPlanes / 2)
        conv2 = try Conv2d(outPlanes / 2, outPlanes / 4, kernelSize: 3, padding: 1, bias: false)
        bn3 = try BatchNorm2d(outPlanes / 4)
        conv3 = try Conv2d(outPlanes / 4, outPlanes / 4, kernelSize: 3, padding: 1, bias: false)
        downsample = inPlanes == outPlanes ? nil : Sequential([
            try BatchNorm2d(inPlanes, eps: 1e-4), SequentialReLU(),
            try Conv2d(inPlanes, outPlanes, kernelSize: 1, bias: false),
        ])
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let out1 = try conv1(bn1(x).relu())
        let out2 = try conv2(bn2(out1).relu())
        let out3 = try conv3(bn3(out2).relu())
        let residual = try downsample.map { try $0(x) } ?? x
        return try Tensor.cat([out1, out2, out3], dim: 1) + residual
    }
}

/// FAN's HourGlass: recursive upper (b1_L) and lower (max-pool, b2_L, inner level or b2_plus_1,
/// b3_L, bilinear upsample) branches. Children are named as the reference registers them:
/// b1_L, b2_L, (level L−1 …), b2_plus_1, b3_L.
public final class FANHourGlass: Module, UnaryLayer {
    public let depth: Int
    /// Dropout(0.5) after the upper branch; the identity in eval mode.
    public let dropout: Dropout
    private let named: [(String, FANConvBlock)]
    private let blocks: [String: FANConvBlock]

    public init(depth: Int, features: Int) throws {
        self.depth = depth
        dropout = Dropout(0.5)
        var named: [(String, FANConvBlock)] = []
        func generate(_ level: Int) throws {
            named.append(("b1_\(level)", try FANConvBlock(features, features)))
            named.append(("b2_\(level)", try FANConvBlock(features, features)))
            if level > 1 { try generate(level - 1) } else {
                named.append(("b2_plus_\(level)", try FANConvBlock(features, features)))
            }
            named.append(("b3_\(level)", try FANConvBlock(features, features)))
        }
        try generate(depth)
        self.named = named
        blocks = Dictionary(uniqueKeysWithValues: named)
    }

    public override func listedChildren() -> [(String, Module)]? {
        [("dropout", dropout)] + named.map { ($0.0, $0.1 as Module) }
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor { try forward(level: depth, x) }

    private func forward(level: Int, _ x: Tensor) throws -> Tensor {
        let up1 = try dropout(blocks["b1_\(level)"]!(x))
        let low1 = try blocks["b2_\(level)"]!(F.maxPool2d(x, kernel: (2, 2), stride: (2, 2)))
        let low2 = level > 1 ? try forward(level: level - 1, low1) : try blocks["b2_plus_\(level)"]!(low1)
        let low3 = try blocks["b3_\(level)"]!(low2)
        let s = up1.shape
        let up2 = try F.interpolate(low3, size: (s[2], s[3]), mode: .bilinear, alignCorners: false)
        return try up1 + up2
    }
}

/// diffusers.models.embeddings.PatchEmbed (sincos, no layer norm): a p×p stride-p conv to tokens
/// plus a fixed 2-D sin-cos position embedding (a non-persistent buffer, not in the state dict).
public final class FANPatchEmbed: Module {
    public let proj: Conv2d
    @Buffer public var pos_embed: Tensor
    public let patchSize: Int
    public let gridSize: Int

    public init(sampleSize: Int, patchSize: Int, inChannels: Int, embedDim: Int) throws {
        proj = try Conv2d(inChannels, embedDim, kernelSize: patchSize, stride: patchSize)
        self.patchSize = patchSize
        gridSize = sampleSize / patchSize
        _pos_embed = Buffer(wrappedValue: try FANPatchEmbed.sincos2D(embedDim: embedDim, gridSize: gridSize, baseSize: gridSize),
                            persistent: false)
    }

    /// get_2d_sincos_pos_embed (interpolation_scale 1), in float64 then cast to float32, (1, g², D).
    /// The first half of the channels encodes the column (x), the second half the row (y).
    static func sincos2D(embedDim: Int, gridSize: Int, baseSize: Int) throws -> Tensor {
        let half = embedDim / 2, quarter = half / 2
        let omega = (0..<quarter).map { 1.0 / pow(10000.0, Double($0) / Double(quarter)) }
        var values = [Float](repeating: 0, count: gridSize * gridSize * embedDim)
        // grid positions are float32 arange / (grid / base), as numpy computes them.
        let pos = (0..<gridSize).map { Double(Float($0) / (Float(gridSize) / Float(baseSize))) }
        for row in 0..<gridSize {
            for col in 0..<gridSize {
                let base = (row * gridSize + col) * embedDim
                for (part, p) in [pos[col], pos[row]].enumerated() {
                    for (i, w) in omega.enumerated() {
                        values[base + part * half + i] = Float(sin(p * w))
                        values[base + part * half + quarter + i] = Float(cos(p * w))
                    }
                }
            }
        }
        return try Tensor(values, shape: [1, gridSize * gridSize, embedDim])
    }

    /// (N, C, H, W) → (N, (H/p)·(W/p), D).
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let tokens = try proj(x).flatten(2).transpose(1, 2)
        let gh = x.shape[2] / patchSize, gw = x.shape[3] / patchSize
        guard gh == gridSize, gw == gridSize else {
            throw TorchError("PatchEmbed: input \(x.shape[2])×\(x.shape[3]) does not match sample size \(gridSize * patchSize)")
        }
        return try tokens + pos_embed.to(tokens.device, tokens.dtype)
    }
}

/// motion_module.TemporalTransformerBlock with attention_block_types ("Spatial_Self",): pre-norm
/// self-attention over the patches of each frame, then a pre-norm GEGLU feed-forward.
public final class FANSpatialSelfAttentionBlock: Module {
    public let attention_blocks: [Attention]
    public let norms: [LayerNorm]
    public let ff: FeedForward
    public let ff_norm: LayerNorm

    public init(dim: Int, heads: Int, headDim: Int) throws {
        attention_blocks = [try Attention(queryDim: dim, heads: heads, dimHead: headDim, bias: false)]
        norms = [try LayerNorm(dim)]
        ff = try FeedForward(dim: dim, activation: "geglu")
        ff_norm = try LayerNorm(dim)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for (attn, norm) in zip(attention_blocks, norms) { h = try attn(norm(h)) + h }
        return try ff(ff_norm(h)) + h
    }
}

/// FAN_temporal_feature_extractor.TemporalTransformer3DModel as FAN_SA uses it (one frame per
/// sample, Spatial_Self): GroupNorm → PatchEmbed (+ 2-D sin-cos) → transformer blocks →
/// per-patch proj_out (zero-init in the reference) → unpatchify → + input.
public final class FANPatchAttention: Module, UnaryLayer {
    public let norm: GroupNorm
    public let transformer_blocks: [FANSpatialSelfAttentionBlock]
    public let proj_out: Linear
    public let pos_embed: FANPatchEmbed
    public let inChannels: Int
    public let patchSize: Int

    public init(inChannels: Int, sampleSize: Int, patchSize: Int, heads: Int = 8, headDim: Int = 128,
                layers: Int = 1, normGroups: Int = 32) throws {
        let inner = heads * headDim
        self.inChannels = inChannels
        self.patchSize = patchSize
        norm = try GroupNorm(numGroups: normGroups, numChannels: inChannels, eps: 1e-6)
        transformer_blocks = try (0..<layers).map { _ in try FANSpatialSelfAttentionBlock(dim: inner, heads: heads, headDim: headDim) }
        proj_out = try Linear(inner / (patchSize * patchSize), inChannels)
        pos_embed = try FANPatchEmbed(sampleSize: sampleSize, patchSize: patchSize, inChannels: inChannels, embedDim: inner)
        super.init()
        if ParameterInit.mode != .uninitialized {
            try Torch.noGrad {
                try proj_out.weight.zero_()
                try proj_out.bias?.zero_()
            }
        }
    }

    /// (N, C, H, W) → (N, C, H, W); N is (b f) — every frame attends over its own patches.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let s = x.shape, p = patchSize
        let gh = s[2] / p, gw = s[3] / p
        var h = try pos_embed(norm(x))
        for block in transformer_blocks { h = try block(h) }
        // tokens → (n, gh, gw, p, p, inner/p²) → proj_out → einsum nhwpqc->nchpwq → (n, C, H, W)
        h = try proj_out(h.reshape([s[0], gh, gw, p, p, -1]))
        h = try h.permute([0, 5, 1, 3, 2, 4]).reshape([s[0], inChannels, s[2], s[3]])
        return try h + x
    }
}

/// FAN_SA: the FAN face-alignment trunk with patch self-attention after conv2, conv4 and the
/// hourglass head; the 68 landmark heatmaps are reduced by conv6 and fc to a 512-d motion code.
public final class FANSelfAttention: Module {
    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let conv2: FANConvBlock
    public let conv3: FANConvBlock
    public let conv4: FANConvBlock
    public let m0: FANHourGlass
    public let top_m_0: FANConvBlock
    public let conv_last0: Conv2d
    public let l0: Conv2d
    public let bn_end0: BatchNorm2d
    public let conv6: Conv2d
    public let fc: Linear
    public let bn5: BatchNorm2d
    public let att_1: FANPatchAttention
    public let att_2: FANPatchAttention
    public let att_3: FANPatchAttention

    public init(_ c: MotionEncoder.Config) throws {
        let w = c.base_channels, f = 4 * c.base_channels
        conv1 = try Conv2d(3, w, kernelSize: 7, stride: 2, padding: 3)
        bn1 = try BatchNorm2d(w)
        conv2 = try FANConvBlock(w, 2 * w)
        conv3 = try FANConvBlock(2 * w, 2 * w)
        conv4 = try FANConvBlock(2 * w, f)
        m0 = try FANHourGlass(depth: c.hourglass_depth, features: f)
        top_m_0 = try FANConvBlock(f, f)
        conv_last0 = try Conv2d(f, f, kernelSize: 1)
        l0 = try Conv2d(f, c.num_landmarks, kernelSize: 1)
        bn_end0 = try BatchNorm2d(f)
        conv6 = try Conv2d(c.num_landmarks, 1, kernelSize: 3, stride: 2, padding: 1)
        let grid = c.image_size / 8
        fc = try Linear(grid * grid, c.latent_dim)
        bn5 = try BatchNorm2d(c.num_landmarks)
        func attention(_ channels: Int, _ size: Int, _ patch: Int) throws -> FANPatchAttention {
            try FANPatchAttention(inChannels: channels, sampleSize: size, patchSize: patch, heads: c.attention_heads,
                                  headDim: c.attention_head_dim, normGroups: c.norm_num_groups)
        }
        att_1 = try attention(2 * w, c.image_size / 2, 4)
        att_2 = try attention(f, c.image_size / 4, 2)
        att_3 = try attention(f, c.image_size / 4, 2)
    }

    /// (N, 3, S, S) in [-1, 1] → (N, latent_dim).
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = try bn1(conv1(x)).relu()
        h = try att_1(conv2(h))
        h = try F.maxPool2d(h, kernel: (2, 2), stride: (2, 2))
        h = try att_2(conv4(conv3(h)))
        var ll = try top_m_0(m0(h))
        ll = try att_3(bn_end0(conv_last0(ll)))
        var net = try bn5(l0(ll.relu())).relu()
        net = try conv6(net)
        net = try net.reshape([net.shape[0], -1]).relu()
        return try fc(net)
    }
}

public final class MotionEncoder: Module {
    public struct Config: Codable, Sendable, Equatable {
        /// Channels per motion token (the reference's only constructor argument).
        public var out_ch: Int = 16
        /// Size of the motion code; tokens = latent_dim / out_ch.
        public var latent_dim: Int = 512
        /// Input crop size; fc sees (image_size/8)² values.
        public var image_size: Int = 224
        /// FAN trunk width: conv1 has base, conv2/3 2·base, the hourglass 4·base channels.
        public var base_channels: Int = 64
        public var hourglass_depth: Int = 4
        public var num_landmarks: Int = 68
        public var attention_heads: Int = 8
        public var attention_head_dim: Int = 128
        public var norm_num_groups: Int = 32

        public init(out_ch: Int = 16, latent_dim: Int = 512, image_size: Int = 224, base_channels: Int = 64,
                    hourglass_depth: Int = 4, num_landmarks: Int = 68, attention_heads: Int = 8,
                    attention_head_dim: Int = 128, norm_num_groups: Int = 32) {
            self.out_ch = out_ch
            self.latent_dim = latent_dim
            self.image_size = image_size
            self.base_channels = base_channels
            self.hourglass_depth = hourglass_depth
            self.num_landmarks = num_landmarks
            self.attention_heads = attention_heads
            self.attention_head_dim = attention_head_dim
            self.norm_num_groups = norm_num_groups
        }

        enum K: String, CodingKey, CaseIterable {
            case out_ch, latent_dim, image_size, base_channels, hourglass_depth, num_landmarks, attention_heads,
                 attention_head_dim, norm_num_groups
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            self.init(out_ch: try c.value(.out_ch, default: 16), latent_dim: try c.value(.latent_dim, default: 512),
                      image_size: try c.value(.image_size, default: 224),
                      base_channels: try c.value(.base_channels, default: 64),
                      hourglass_depth: try c.value(.hourglass_depth, default: 4),
                      num_landmarks: try c.value(.num_landmarks, default: 68),
                      attention_heads: try c.value(.attention_heads, default: 8),
                      attention_head_dim: try c.value(.attention_head_dim, default: 128),
                      norm_num_groups: try c.value(.norm_num_groups, default: 32))
            try validate()
        }

        /// The divisibility the architecture relies on, reported up front instead of as a shape error.
        public func validate() throws {
            guard latent_dim % out_ch == 0 else { throw TorchError("MotionEncoder: latent_dim \(latent_dim) is not a multiple of out_ch \(out_ch)") }
            // Patches of 4 at 1/2 and of 2 at 1/4 resolution; the hourglass upsamples to explicit
            // sizes, so odd maps are fine as long as its deepest level is at least 1 pixel.
            guard image_size % 8 == 0, image_size / 4 >= 1 << hourglass_depth else {
                throw TorchError("MotionEncoder: image_size \(image_size) must be a multiple of 8 and at least 4·2^hourglass_depth")
            }
            guard (2 * base_channels) % norm_num_groups == 0 else {
                throw TorchError("MotionEncoder: norm_num_groups \(norm_num_groups) must divide 2·base_channels = \(2 * base_channels)")
            }
            guard out_ch % 2 == 0, hourglass_depth >= 1 else { throw TorchError("MotionEncoder: out_ch must be even and hourglass_depth ≥ 1") }
        }

        public var tokens: Int { latent_dim / out_ch }
    }

    /// Fixed 1-D sin-cos embedding of the token index, (1, tokens, out_ch); in the state dict.
    @Buffer public var pe: Tensor
    public let model: FANSelfAttention
    public let final_proj: Linear
    public let config: Config

    public init(_ config: Config = Config()) throws {
        try config.validate()
        self.config = config
        pe = try MotionEncoder.sincos1D(dim: config.out_ch, positions: config.tokens)
        model = try FANSelfAttention(config)
        final_proj = try Linear(config.latent_dim, config.latent_dim)
    }

    /// get_1d_sincos_pos_embed_from_grid(dim, arange(n)) in float64, cast to float32:
    /// [sin(l·ω_i) | cos(l·ω_i)] with ω_i = 1/10000^(i/(dim/2)).
    static func sincos1D(dim: Int, positions: Int) throws -> Tensor {
        let half = dim / 2
        var values = [Float](repeating: 0, count: positions * dim)
        for l in 0..<positions {
            for i in 0..<half {
                let w = 1.0 / pow(10000.0, Double(i) / (Double(dim) / 2))
                values[l * dim + i] = Float(sin(Double(l) * w))
                values[l * dim + half + i] = Float(cos(Double(l) * w))
            }
        }
        return try Tensor(values, shape: [1, positions, dim])
    }

    /// face: (N, 3, S, S) → (N, tokens, out_ch), or a video (b, 3, f, S, S) → (b, f, tokens, out_ch).
    public func callAsFunction(_ face: Tensor) throws -> Tensor {
        if face.dim == 5 {
            let s = face.shape
            let frames = try face.permute([0, 2, 1, 3, 4]).reshape([s[0] * s[2], s[1], s[3], s[4]])
            return try encode(frames).reshape([s[0], s[2], config.tokens, config.out_ch])
        }
        return try encode(face)
    }

    private func encode(_ x: Tensor) throws -> Tensor {
        let latent = try final_proj(model(x))
        return try latent.reshape([x.shape[0], config.tokens, config.out_ch]) + pe.to(latent.device, latent.dtype)
    }
}
