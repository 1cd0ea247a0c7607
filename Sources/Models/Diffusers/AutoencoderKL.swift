// AutoencoderKL.swift — mirrors diffusers.models.autoencoders.autoencoder_kl.AutoencoderKL
// (diffusers 0.27) and its DiagonalGaussianDistribution (autoencoders/vae.py). The scaling factor
// (0.18215 for SD) is applied by the caller, exactly as in diffusers pipelines.
import Foundation
import NN
import Torch

/// diffusers `DiagonalGaussianDistribution` over (B, 2·C, H, W) moments.
public struct DiagonalGaussian {
    public let mean: Tensor
    /// clamp(logvar, −30, 20)
    public let logvar: Tensor
    public let std: Tensor
    public let variance: Tensor
    public let deterministic: Bool

    public init(moments: Tensor, deterministic: Bool = false) throws {
        let parts = try moments.chunk(2, dim: 1)
        mean = parts[0]
        self.deterministic = deterministic
        if deterministic {
            logvar = try parts[1].clamp(min: -30, max: 20)
            std = try Tensor.zeros(mean.shape, dtype: mean.dtype, device: mean.device)
            variance = std
        } else {
            logvar = try parts[1].clamp(min: -30, max: 20)
            std = try (logvar * 0.5).exp()
            variance = try logvar.exp()
        }
    }

    /// mean + std · ε with ε drawn from `generator` (the global generator when nil), like
    /// diffusers' `randn_tensor(mean.shape, generator=…)`: a CPU generator with CUDA latents draws
    /// on the CPU and moves the noise, so results do not depend on the device. `shard` draws ε for
    /// one data-parallel rank's rows of the global batch (BatchShard.swift).
    public func sample(generator: Generator? = nil, shard: BatchShard = .whole) throws -> Tensor {
        let eps = try shard.randn(mean.shape, dtype: mean.dtype, generator: generator, device: mean.device)
        return try mean + std * eps
    }

    /// The mean (diffusers `mode()`).
    public func mode() -> Tensor { mean }

    /// KL divergence to N(0, I) (or to `other`), summed over C, H, W.
    public func kl(_ other: DiagonalGaussian? = nil) throws -> Tensor {
        if deterministic { return try Tensor.zeros([mean.shape[0]], dtype: mean.dtype, device: mean.device) }
        guard let o = other else {
            return try ((mean.square() + variance - 1.0 - logvar) * 0.5).sum([1, 2, 3])
        }
        let t = try (mean - o.mean).square() / o.variance + variance / o.variance - 1.0 - logvar + o.logvar
        return try (t * 0.5).sum([1, 2, 3])
    }
}

public final class AutoencoderKL: Module {
    /// diffusers `config.json` of an AutoencoderKL (unknown keys are errors; `_class_name` etc. ignored).
    public struct Config: Codable, Sendable, Equatable {
        public var in_channels: Int = 3
        public var out_channels: Int = 3
        public var down_block_types: [String] = ["DownEncoderBlock2D"]
        public var up_block_types: [String] = ["UpDecoderBlock2D"]
        public var block_out_channels: [Int] = [64]
        public var layers_per_block: Int = 1
        public var act_fn: String = "silu"
        public var latent_channels: Int = 4
        public var norm_num_groups: Int = 32
        public var sample_size: Int = 32
        public var scaling_factor: Double = 0.18215
        public var shift_factor: Double?
        public var latents_mean: [Double]?
        public var latents_std: [Double]?
        public var force_upcast: Bool = true
        public var use_quant_conv: Bool = true
        public var use_post_quant_conv: Bool = true
        public var mid_block_add_attention: Bool = true

        public init() {}

        /// stabilityai/sd-vae-ft-mse (the VAE of SD 1.x and PersonaLive).
        public static var sdVAE: Config {
            var c = Config()
            c.down_block_types = Array(repeating: "DownEncoderBlock2D", count: 4)
            c.up_block_types = Array(repeating: "UpDecoderBlock2D", count: 4)
            c.block_out_channels = [128, 256, 512, 512]
            c.layers_per_block = 2
            c.sample_size = 256
            return c
        }

        enum K: String, CodingKey, CaseIterable {
            case in_channels, out_channels, down_block_types, up_block_types, block_out_channels, layers_per_block,
                 act_fn, latent_channels, norm_num_groups, sample_size, scaling_factor, shift_factor, latents_mean,
                 latents_std, force_upcast, use_quant_conv, use_post_quant_conv, mid_block_add_attention
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            let d = Config()
            in_channels = try c.value(.in_channels, default: d.in_channels)
            out_channels = try c.value(.out_channels, default: d.out_channels)
            down_block_types = try c.value(.down_block_types, default: d.down_block_types)
            up_block_types = try c.value(.up_block_types, default: d.up_block_types)
            block_out_channels = try c.value(.block_out_channels, default: d.block_out_channels)
            layers_per_block = try c.value(.layers_per_block, default: d.layers_per_block)
            act_fn = try c.value(.act_fn, default: d.act_fn)
            latent_channels = try c.value(.latent_channels, default: d.latent_channels)
            norm_num_groups = try c.value(.norm_num_groups, default: d.norm_num_groups)
            sample_size = try c.value(.sample_size, default: d.sample_size)
            scaling_factor = try c.value(.scaling_factor, default: d.scaling_factor)
            shift_factor = try c.value(.shift_factor, default: nil)
            latents_mean = try c.value(.latents_mean, default: nil)
            latents_std = try c.value(.latents_std, default: nil)
            force_upcast = try c.value(.force_upcast, default: d.force_upcast)
            use_quant_conv = try c.value(.use_quant_conv, default: d.use_quant_conv)
            use_post_quant_conv = try c.value(.use_post_quant_conv, default: d.use_post_quant_conv)
            mid_block_add_attention = try c.value(.mid_block_add_attention, default: d.mid_block_add_attention)
        }

        func validate() throws {
            let n = block_out_channels.count
            guard n > 0 else { throw TorchError("AutoencoderKL config: block_out_channels is empty") }
            guard down_block_types.count == n, up_block_types.count == n else {
                throw TorchError("AutoencoderKL config: \(down_block_types.count) down_block_types and "
                                 + "\(up_block_types.count) up_block_types for \(n) block_out_channels")
            }
            if let bad = down_block_types.first(where: { $0 != "DownEncoderBlock2D" }) {
                throw TorchError("AutoencoderKL config: down block type '\(bad)' is not supported (DownEncoderBlock2D)")
            }
            if let bad = up_block_types.first(where: { $0 != "UpDecoderBlock2D" }) {
                throw TorchError("AutoencoderKL config: up block type '\(bad)' is not supported (UpDecoderBlock2D)")
            }
            if let bad = block_out_channels.first(where: { $0 % norm_num_groups != 0 }) {
                throw TorchError("AutoencoderKL config: \(bad) channels are not divisible by norm_num_groups \(norm_num_groups)")
            }
            guard ["silu", "swish", "mish", "gelu", "relu"].contains(act_fn) else {
                throw TorchError("AutoencoderKL config: act_fn '\(act_fn)' is not supported (silu, swish, mish, gelu, relu)")
            }
        }
    }

    public let encoder: VAEEncoder
    public let decoder: VAEDecoder
    public let quant_conv: Conv2d?
    public let post_quant_conv: Conv2d?
    public let config: Config

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        let act = config.act_fn == "swish" ? "silu" : config.act_fn
        encoder = try VAEEncoder(inChannels: config.in_channels, outChannels: config.latent_channels,
                                 blockOutChannels: config.block_out_channels, layersPerBlock: config.layers_per_block,
                                 groups: config.norm_num_groups, act: act,
                                 midBlockAddAttention: config.mid_block_add_attention)
        decoder = try VAEDecoder(inChannels: config.latent_channels, outChannels: config.out_channels,
                                 blockOutChannels: config.block_out_channels, layersPerBlock: config.layers_per_block,
                                 groups: config.norm_num_groups, act: act,
                                 midBlockAddAttention: config.mid_block_add_attention)
        let z2 = 2 * config.latent_channels
        quant_conv = config.use_quant_conv ? try Conv2d(z2, z2, kernelSize: 1) : nil
        post_quant_conv = config.use_post_quant_conv
            ? try Conv2d(config.latent_channels, config.latent_channels, kernelSize: 1) : nil
    }

    /// Images (B, in_channels, H, W) in [−1, 1] → the latent distribution (H/2^(n−1), W/2^(n−1)).
    /// `trace` sees encoder.down_blocks.i, encoder.mid_block, quant_conv (= moments before clamp), ….
    public func encode(_ x: Tensor, trace: VAETrace? = nil) throws -> DiagonalGaussian {
        var h = try encoder(x, trace: trace)
        if let q = quant_conv {
            h = try q(h)
            trace?("quant_conv", h)
        }
        return try DiagonalGaussian(moments: h)
    }

    /// Latents (unscaled: divide by scaling_factor first) → images.
    public func decode(_ z: Tensor, trace: VAETrace? = nil) throws -> Tensor {
        var h = z
        if let p = post_quant_conv {
            h = try p(h)
            trace?("post_quant_conv", h)
        }
        return try decoder(h, trace: trace)
    }

    /// encode → sample (or mean) → decode, as AutoencoderKL.forward.
    public func callAsFunction(_ x: Tensor, samplePosterior: Bool = false, generator: Generator? = nil) throws -> Tensor {
        let dist = try encode(x)
        return try decode(samplePosterior ? dist.sample(generator: generator) : dist.mean)
    }

    // MARK: loading

    /// Old diffusers names of the mid-block attention parameters → current ones.
    public static let legacyAttentionNames: [(old: String, new: String)] = [
        ("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0"),
    ]

    /// The current key for a checkpoint key, renaming legacy attention names
    /// (`…attentions.N.query.weight` → `…attentions.N.to_q.weight`); other keys are unchanged.
    public static func currentKey(_ key: String) -> String {
        guard key.contains(".attentions.") else { return key }
        var parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard parts.count >= 2 else { return key }
        let nameIndex = parts.count - 2
        guard nameIndex >= 2, parts[nameIndex - 2] == "attentions", Int(parts[nameIndex - 1]) != nil,
              let m = legacyAttentionNames.first(where: { $0.old == parts[nameIndex] }) else { return key }
        parts[nameIndex] = m.new
        return parts.joined(separator: ".")
    }

    /// Maps checkpoint keys to current names; throws if two keys land on the same name.
    public static func renameLegacyKeys(_ keys: [String]) throws -> [String: String] {
        var out: [String: String] = [:]
        for k in keys {
            let n = currentKey(k)
            if let other = out[n], other != k {
                throw TorchError("AutoencoderKL: checkpoint has both '\(other)' and '\(k)' for parameter '\(n)'")
            }
            out[n] = k
        }
        return out
    }

    /// Strict load accepting both current and legacy attention names.
    @discardableResult
    public func loadAcceptingLegacyNames(from source: StateDictSource) throws -> LoadReport {
        let map = try Self.renameLegacyKeys(source.keys)
        return try load(from: RenamedStateDictSource(source, currentToSource: map), strict: true)
    }

    /// Builds the model from a diffusers folder (config.json + weights) with uninitialised storage
    /// and loads the weights strictly.
    public static func fromPretrained(_ directory: String) throws -> AutoencoderKL {
        let folder = try DiffusersFolder(directory)
        let model = try ParameterInit.uninitialized { try AutoencoderKL(folder.decodeConfig(Config.self)) }
        try model.loadAcceptingLegacyNames(from: folder.weights())
        model.eval()
        return model
    }
}

/// A source seen under other key names: `currentToSource` maps each exposed key to the source key
/// (keys not in the map are exposed unchanged).
public struct RenamedStateDictSource: StateDictSource {
    public let base: StateDictSource
    public let currentToSource: [String: String]
    private let exposed: [String]

    public init(_ base: StateDictSource, currentToSource: [String: String]) {
        self.base = base
        self.currentToSource = currentToSource
        let renamedSources = Set(currentToSource.values)
        let passthrough = base.keys.filter { !renamedSources.contains($0) }
        exposed = (Array(currentToSource.keys) + passthrough).sorted()
    }

    public var sourceName: String { base.sourceName }
    public var keys: [String] { exposed }
    public func shape(of key: String) -> [Int]? { base.shape(of: currentToSource[key] ?? key) }
    public func read(_ key: String, into tensor: Tensor) throws { try base.read(currentToSource[key] ?? key, into: tensor) }
}
