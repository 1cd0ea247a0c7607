// StyleGAN2Discriminator.swift — mirrors PersonaLive's src/stylegan2/discriminator.py
// `Discriminator` (NVlabs stylegan2-ada-pytorch, with a diffusers timestep embedding added to the
// features after every block) and its non-saturating softplus losses (forward_G / forward_D).
// The equalized-learning-rate layers (Conv2dLayer, FullyConnectedLayer), upfirdn2d / conv2d_resample
// and bias_act follow the reference CPU paths of torch_utils.ops.
import Foundation
import NN
import Torch

public final class StyleGAN2Discriminator: Module {
    /// The reference constructor's keyword arguments (defaults = train_stage3's Discriminator()).
    public struct Config: Codable, Sendable, Equatable {
        public var c_dim: Int = 0
        public var img_resolution: Int = 512
        public var img_channels: Int = 3
        public var temb_channels: Int = 512
        public var architecture: String = "resnet"
        public var channel_base: Int = 32768
        public var channel_max: Int = 512
        public var num_fp16_res: Int = 0
        public var conv_clamp: Double?
        public var cmap_dim: Int?

        public init(c_dim: Int = 0, img_resolution: Int = 512, img_channels: Int = 3, temb_channels: Int = 512,
                    architecture: String = "resnet", channel_base: Int = 32768, channel_max: Int = 512,
                    num_fp16_res: Int = 0, conv_clamp: Double? = nil, cmap_dim: Int? = nil) {
            self.c_dim = c_dim
            self.img_resolution = img_resolution
            self.img_channels = img_channels
            self.temb_channels = temb_channels
            self.architecture = architecture
            self.channel_base = channel_base
            self.channel_max = channel_max
            self.num_fp16_res = num_fp16_res
            self.conv_clamp = conv_clamp
            self.cmap_dim = cmap_dim
        }

        enum K: String, CodingKey, CaseIterable {
            case c_dim, img_resolution, img_channels, temb_channels, architecture, channel_base, channel_max,
                 num_fp16_res, conv_clamp, cmap_dim, block_kwargs, mapping_kwargs, epilogue_kwargs
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            c_dim = try c.value(.c_dim, default: 0)
            img_resolution = try c.value(.img_resolution, default: 512)
            img_channels = try c.value(.img_channels, default: 3)
            temb_channels = try c.value(.temb_channels, default: 512)
            architecture = try c.value(.architecture, default: "resnet")
            channel_base = try c.value(.channel_base, default: 32768)
            channel_max = try c.value(.channel_max, default: 512)
            num_fp16_res = try c.value(.num_fp16_res, default: 0)
            conv_clamp = try c.value(.conv_clamp, default: nil)
            cmap_dim = try c.value(.cmap_dim, default: nil)
            // The reference's per-part kwargs dicts: only their defaults (empty) are supported.
            for key in [K.block_kwargs, .mapping_kwargs, .epilogue_kwargs] {
                let v: [String: JSONValue] = try c.value(key, default: [:])
                if let first = v.keys.sorted().first {
                    throw UnknownConfigKeyError(path: key.rawValue, key: first, suggestion: nil)
                }
            }
            try validate()
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: K.self)
            try c.encode(c_dim, forKey: .c_dim)
            try c.encode(img_resolution, forKey: .img_resolution)
            try c.encode(img_channels, forKey: .img_channels)
            try c.encode(temb_channels, forKey: .temb_channels)
            try c.encode(architecture, forKey: .architecture)
            try c.encode(channel_base, forKey: .channel_base)
            try c.encode(channel_max, forKey: .channel_max)
            try c.encode(num_fp16_res, forKey: .num_fp16_res)
            try c.encode(conv_clamp, forKey: .conv_clamp)
            try c.encode(cmap_dim, forKey: .cmap_dim)
        }

        public func validate() throws {
            guard img_resolution >= 8, img_resolution & (img_resolution - 1) == 0 else {
                throw TorchError("StyleGAN2Discriminator: img_resolution \(img_resolution) is not a power of two ≥ 8")
            }
            guard ["orig", "skip", "resnet"].contains(architecture) else {
                throw TorchError("StyleGAN2Discriminator: architecture '\(architecture)' is not orig, skip or resnet")
            }
            guard temb_channels > 0, temb_channels % 2 == 0 else {
                throw TorchError("StyleGAN2Discriminator: temb_channels must be positive and even")
            }
        }

        /// Block resolutions from img_resolution down to 8 (b4 is the epilogue).
        public var blockResolutions: [Int] {
            var out: [Int] = []
            var r = img_resolution
            while r > 4 { out.append(r); r /= 2 }
            return out
        }

        public func channels(at res: Int) -> Int { Swift.min(channel_base / res, channel_max) }
    }

    public let config: Config
    public let time_emb_proj: [Linear]
    public let blocks: [DiscriminatorBlock]
    public let mapping: MappingNetwork?
    public let b4: DiscriminatorEpilogue
    public let time_proj: Timesteps
    public let time_embedding: TimestepEmbedding

    public init(_ config: Config = Config()) throws {
        try config.validate()
        self.config = config
        let res = config.blockResolutions
        let log2 = Int(Foundation.log2(Double(config.img_resolution)).rounded())
        let fp16Resolution = Swift.max(1 << Swift.max(log2 + 1 - config.num_fp16_res, 0), 8)
        var cmapDim = config.cmap_dim ?? config.channels(at: 4)
        if config.c_dim == 0 { cmapDim = 0 }
        var layerIndex = 0
        var blocks: [DiscriminatorBlock] = []
        var projections: [Linear] = []
        for r in res {
            let block = try DiscriminatorBlock(
                inChannels: r < config.img_resolution ? config.channels(at: r) : 0, tmpChannels: config.channels(at: r),
                outChannels: config.channels(at: r / 2), resolution: r, imgChannels: config.img_channels,
                firstLayerIndex: layerIndex, architecture: config.architecture, useFP16: r >= fp16Resolution,
                convClamp: config.conv_clamp)
            layerIndex += block.numLayers
            blocks.append(block)
            // zero_module(nn.Linear(temb_channels, out_channels))
            let proj = try Linear(config.temb_channels, config.channels(at: r / 2))
            if ParameterInit.mode != .uninitialized {
                try Torch.noGrad {
                    try proj.weight.zero_()
                    try proj.bias?.zero_()
                }
            }
            projections.append(proj)
        }
        self.blocks = blocks
        time_emb_proj = projections
        mapping = config.c_dim > 0 ? try MappingNetwork(cDim: config.c_dim, wDim: cmapDim) : nil
        b4 = try DiscriminatorEpilogue(inChannels: config.channels(at: 4), cmapDim: cmapDim, resolution: 4,
                                       imgChannels: config.img_channels, architecture: config.architecture,
                                       convClamp: config.conv_clamp)
        time_proj = Timesteps(numChannels: config.temb_channels, flipSinToCos: true, downscaleFreqShift: 0)
        time_embedding = try TimestepEmbedding(inChannels: config.temb_channels, timeEmbedDim: config.temb_channels)
        super.init()
    }

    /// Registration order of the reference: time_emb_proj, b<res>…, mapping, b4, time_proj (no
    /// weights), time_embedding.
    public override func listedChildren() -> [(String, Module)]? {
        var out: [(String, Module)] = time_emb_proj.enumerated().map { ("time_emb_proj.\($0.offset)", $0.element) }
        out += zip(config.blockResolutions, blocks).map { ("b\($0.0)", $0.1) }
        if let mapping { out.append(("mapping", mapping)) }
        out.append(("b4", b4))
        out.append(("time_proj", time_proj))
        out.append(("time_embedding", time_embedding))
        return out
    }

    /// `_pass`: logits (N, 1) for images (N, img_channels, R, R) in [-1, 1] at diffusion
    /// timesteps (N,) (integer or float). `labels` (N, c_dim) only when c_dim > 0.
    public func logits(_ img: Tensor, timesteps: Tensor, labels: Tensor? = nil) throws -> Tensor {
        let t = try timesteps.dim == 0 ? timesteps.reshape([1]) : timesteps
        let tEmb = try time_embedding(time_proj(t).to(img.dtype)).silu()
        var x: Tensor?
        var image: Tensor? = img
        for (block, proj) in zip(blocks, time_emb_proj) {
            (x, image) = try block(x, image)
            let shift = try proj(tEmb).unsqueeze(-1).unsqueeze(-1)
            x = try x! + shift.to(x!.dtype)
        }
        var cmap: Tensor?
        if let mapping {
            guard let labels else { throw TorchError("StyleGAN2Discriminator: c_dim > 0 needs labels") }
            cmap = try mapping(labels)
        }
        return try b4(x!, image, cmap: cmap)
    }

    /// forward_G: softplus(−D(fake)).mean() — the generator's non-saturating loss (a 0-dim tensor).
    public func generatorLoss(fake: Tensor, timesteps: Tensor, labels: Tensor? = nil) throws -> Tensor {
        try logits(fake, timesteps: timesteps, labels: labels).neg().softplus().mean()
    }

    /// forward_D: (softplus(D(fake)) + softplus(−D(real))).mean(), with `fake` detached.
    public func discriminatorLoss(fake: Tensor, real: Tensor, timesteps: Tensor, fakeLabels: Tensor? = nil,
                                  realLabels: Tensor? = nil) throws -> Tensor {
        let fakeScore = try logits(fake.detach(), timesteps: timesteps, labels: fakeLabels)
        let realScore = try logits(real, timesteps: timesteps, labels: realLabels)
        return try (fakeScore.softplus() + realScore.neg().softplus()).mean()
    }

    /// forward(fake, real, timesteps, gen): the G loss when `gen`, else the D loss.
    public func callAsFunction(fake: Tensor, real: Tensor, timesteps: Tensor, gen: Bool) throws -> Tensor {
        gen ? try generatorLoss(fake: fake, timesteps: timesteps)
            : try discriminatorLoss(fake: fake, real: real, timesteps: timesteps)
    }
}

// MARK: - equalized-lr layers and resampling ops

extension StyleGAN2Discriminator {
    /// bias_act activations with their default gains.
    public enum Activation: String, Sendable {
        case linear, lrelu
        var defaultGain: Double { self == .lrelu ? 2.0.squareRoot() : 1 }
    }

    /// upfirdn2d.setup_filter([1, 3, 3, 1]): the normalised outer product (4, 4).
    static func setupFilter(_ taps: [Double] = [1, 3, 3, 1]) throws -> Tensor {
        let f = try Tensor(taps.map(Float.init))
        let outer = try f.unsqueeze(1) * f.unsqueeze(0)
        return try outer / outer.sum()
    }

    /// bias_act reference path: (x + b) → act → ·gain → clamp(±clamp); b broadcast along dim 1.
    static func biasAct(_ x: Tensor, _ b: Tensor?, _ act: Activation, gain: Double, clamp: Double? = nil) throws -> Tensor {
        var y = x
        if let b {
            var shape = [Int](repeating: 1, count: x.dim)
            shape[1] = -1
            y = try y + b.reshape(shape)
        }
        if act == .lrelu { y = try y.leakyRelu(0.2) }
        if gain != 1 { y = try y * gain }
        if let c = clamp, c >= 0 { y = try y.clamp(min: -c, max: c) }
        return y
    }

    /// upfirdn2d reference path (up = 1): pad (crop when negative), FIR filter, keep every
    /// `down`-th pixel. padding = (x0, x1, y0, y1).
    static func upfirdn2d(_ x: Tensor, _ f: Tensor, down: Int = 1, padding p: (Int, Int, Int, Int),
                          flipFilter: Bool = false, gain: Double = 1) throws -> Tensor {
        var y = try x.pad([Swift.max(p.0, 0), Swift.max(p.1, 0), Swift.max(p.2, 0), Swift.max(p.3, 0)])
        let h = y.shape[2], w = y.shape[3]
        y = try y.slice(2, Swift.max(-p.2, 0), h - Swift.max(-p.3, 0)).slice(3, Swift.max(-p.0, 0), w - Swift.max(-p.1, 0))
        var k = try f.to(y.dtype)
        if gain != 1 { k = try k * gain }  // gain ** (ndim / 2) with a 2-D filter
        if !flipFilter { k = try k.flip([0, 1]) }
        let c = y.shape[1]
        k = try k.unsqueeze(0).unsqueeze(0).repeated([c, 1, 1, 1])
        y = try F.conv2d(y, weight: k, groups: c)
        if down > 1 { y = try y.slice(2, 0, nil, step: down).slice(3, 0, nil, step: down) }
        return y
    }

    /// upfirdn2d.downsample2d(x, f, down=2): filter-size-aware padding, then upfirdn2d.
    static func downsample2d(_ x: Tensor, _ f: Tensor, down: Int = 2) throws -> Tensor {
        let fw = f.shape[1], fh = f.shape[0]
        return try upfirdn2d(x, f, down: down, padding: ((fw - down + 1) / 2, (fw - down) / 2,
                                                         (fh - down + 1) / 2, (fh - down) / 2))
    }

    /// conv2d_resample for up = 1 (flip_weight = True): plain conv, or FIR pre-filter then a
    /// strided (or 1×1-after-subsampling) convolution when downsampling.
    static func conv2dResample(_ x: Tensor, _ w: Tensor, _ f: Tensor, down: Int, padding: Int) throws -> Tensor {
        let kh = w.shape[2], kw = w.shape[3]
        if down == 1 {
            return try F.conv2d(x, weight: w, padding: (padding, padding))
        }
        let fw = f.shape[1], fh = f.shape[0]
        let pad = (padding + (fw - down + 1) / 2, padding + (fw - down) / 2,
                   padding + (fh - down + 1) / 2, padding + (fh - down) / 2)
        if kh == 1 && kw == 1 {
            return try F.conv2d(upfirdn2d(x, f, down: down, padding: pad), weight: w)
        }
        return try F.conv2d(upfirdn2d(x, f, padding: pad), weight: w, stride: (down, down))
    }

    /// Conv2dLayer: weight · 1/√(in·k²), conv2d_resample, bias_act with gain def_gain · gain.
    public final class Conv2dLayer: Module {
        public let weight: Tensor
        public let bias: Tensor?
        @Buffer public var resample_filter: Tensor
        public let activation: Activation
        public let down: Int
        public let padding: Int
        public let weightGain: Double
        public let convClamp: Double?

        public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, bias: Bool = true,
                    activation: Activation = .linear, down: Int = 1, convClamp: Double? = nil) throws {
            weight = try makeParameter([outChannels, inChannels, kernelSize, kernelSize], .normal(std: 1))
            self.bias = bias ? try makeParameter([outChannels], .zeros) : nil
            resample_filter = try StyleGAN2Discriminator.setupFilter()
            self.activation = activation
            self.down = down
            padding = kernelSize / 2
            weightGain = 1 / Double(inChannels * kernelSize * kernelSize).squareRoot()
            self.convClamp = convClamp
        }

        public func callAsFunction(_ x: Tensor, gain: Double = 1) throws -> Tensor {
            let w = try (weight * weightGain).to(x.dtype)
            let y = try StyleGAN2Discriminator.conv2dResample(x, w, resample_filter.to(.float32), down: down,
                                                              padding: padding)
            return try StyleGAN2Discriminator.biasAct(y, bias?.to(x.dtype), activation,
                                                      gain: activation.defaultGain * gain,
                                                      clamp: convClamp.map { $0 * gain })
        }
    }

    /// FullyConnectedLayer: weight · lr/√in, bias · lr, then bias_act.
    public final class FullyConnectedLayer: Module {
        public let weight: Tensor
        public let bias: Tensor?
        public let activation: Activation
        public let weightGain: Double
        public let biasGain: Double

        public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, activation: Activation = .linear,
                    lrMultiplier: Double = 1, biasInit: Double = 0) throws {
            weight = try makeParameter([outFeatures, inFeatures], .normal(std: 1 / lrMultiplier))
            if bias {
                let b = try makeParameter([outFeatures], .zeros)
                if biasInit != 0, ParameterInit.mode != .uninitialized { try Torch.noGrad { try b.fill_(biasInit) } }
                self.bias = b
            } else {
                self.bias = nil
            }
            self.activation = activation
            weightGain = lrMultiplier / Double(inFeatures).squareRoot()
            biasGain = lrMultiplier
        }

        public func callAsFunction(_ x: Tensor) throws -> Tensor {
            let w = try (weight.to(x.dtype) * weightGain)
            let b = try bias.map { biasGain == 1 ? try $0.to(x.dtype) : try $0.to(x.dtype) * biasGain }
            if activation == .linear, let b { return try F.linear(x, weight: w, bias: b) }
            return try StyleGAN2Discriminator.biasAct(x.matmul(w.transpose(0, 1)), b, activation,
                                                      gain: activation.defaultGain)
        }
    }

    /// DiscriminatorBlock: optional fromrgb, conv0 (3×3), conv1 (3×3, down 2) and, for resnet, a
    /// 1×1 down-2 skip scaled by √½ (the main path too).
    public final class DiscriminatorBlock: Module {
        @Buffer public var resample_filter: Tensor
        public let fromrgb: Conv2dLayer?
        public let conv0: Conv2dLayer
        public let conv1: Conv2dLayer
        public let skip: Conv2dLayer?
        public let inChannels: Int
        public let architecture: String
        public let useFP16: Bool
        public let numLayers: Int
        public let firstLayerIndex: Int

        public init(inChannels: Int, tmpChannels: Int, outChannels: Int, resolution: Int, imgChannels: Int,
                    firstLayerIndex: Int, architecture: String, useFP16: Bool, convClamp: Double?) throws {
            guard inChannels == 0 || inChannels == tmpChannels else {
                throw TorchError("DiscriminatorBlock: in_channels must be 0 or tmp_channels")
            }
            resample_filter = try StyleGAN2Discriminator.setupFilter()
            self.inChannels = inChannels
            self.architecture = architecture
            self.useFP16 = useFP16
            self.firstLayerIndex = firstLayerIndex
            var n = 0
            if inChannels == 0 || architecture == "skip" {
                fromrgb = try Conv2dLayer(imgChannels, tmpChannels, kernelSize: 1, activation: .lrelu, convClamp: convClamp)
                n += 1
            } else {
                fromrgb = nil
            }
            conv0 = try Conv2dLayer(tmpChannels, tmpChannels, kernelSize: 3, activation: .lrelu, convClamp: convClamp)
            conv1 = try Conv2dLayer(tmpChannels, outChannels, kernelSize: 3, activation: .lrelu, down: 2,
                                    convClamp: convClamp)
            n += 2
            if architecture == "resnet" {
                skip = try Conv2dLayer(tmpChannels, outChannels, kernelSize: 1, bias: false, down: 2)
                n += 1
            } else {
                skip = nil
            }
            numLayers = n
        }

        /// (x, img) → (x, img); img is only carried on by the skip architecture.
        public func callAsFunction(_ x: Tensor?, _ img: Tensor?) throws -> (Tensor, Tensor?) {
            let dtype: DType = useFP16 ? .float16 : .float32
            var h = try x?.to(dtype)
            var image = img
            if let fromrgb {
                guard let im = try img?.to(dtype) else { throw TorchError("DiscriminatorBlock: fromrgb needs an image") }
                let y = try fromrgb(im)
                h = try h.map { try $0 + y } ?? y
                image = architecture == "skip" ? try StyleGAN2Discriminator.downsample2d(im, resample_filter) : nil
            }
            guard let input = h else { throw TorchError("DiscriminatorBlock: no input features") }
            if let skip {
                let y = try skip(input, gain: 0.5.squareRoot())
                let main = try conv1(conv0(input), gain: 0.5.squareRoot())
                return (try y + main, image)
            }
            return (try conv1(conv0(input)), image)
        }
    }

    /// MinibatchStdLayer: appends the group standard deviation as extra feature maps.
    public final class MinibatchStdLayer: Module {
        public let groupSize: Int?
        public let numChannels: Int

        public init(groupSize: Int?, numChannels: Int = 1) {
            self.groupSize = groupSize
            self.numChannels = numChannels
        }

        public func callAsFunction(_ x: Tensor) throws -> Tensor {
            let s = x.shape
            let (n, c, h, w) = (s[0], s[1], s[2], s[3])
            let g = groupSize.map { Swift.min($0, n) } ?? n
            guard g > 0, n % g == 0 else {
                throw TorchError("MinibatchStdLayer: batch \(n) is not divisible by the group size \(g)")
            }
            let f = numChannels
            var y = try x.reshape([g, -1, f, c / f, h, w])
            y = try y - y.mean([0])
            y = try y.square().mean([0])
            y = try (y + 1e-8).sqrt()
            y = try y.mean([2, 3, 4]).reshape([-1, f, 1, 1]).repeated([g, 1, h, w])
            return try Tensor.cat([x, y], dim: 1)
        }
    }

    /// DiscriminatorEpilogue (b4): minibatch stddev, 3×3 conv, fc, out (with label projection
    /// when conditioned).
    public final class DiscriminatorEpilogue: Module {
        public let fromrgb: Conv2dLayer?
        public let mbstd: MinibatchStdLayer?
        public let conv: Conv2dLayer
        public let fc: FullyConnectedLayer
        public let out: FullyConnectedLayer
        public let cmapDim: Int

        public init(inChannels: Int, cmapDim: Int, resolution: Int, imgChannels: Int, architecture: String,
                    mbstdGroupSize: Int? = 4, mbstdNumChannels: Int = 1, convClamp: Double?) throws {
            self.cmapDim = cmapDim
            fromrgb = architecture == "skip"
                ? try Conv2dLayer(imgChannels, inChannels, kernelSize: 1, activation: .lrelu) : nil
            mbstd = mbstdNumChannels > 0 ? MinibatchStdLayer(groupSize: mbstdGroupSize, numChannels: mbstdNumChannels) : nil
            conv = try Conv2dLayer(inChannels + (mbstdNumChannels > 0 ? mbstdNumChannels : 0), inChannels, kernelSize: 3,
                                   activation: .lrelu, convClamp: convClamp)
            fc = try FullyConnectedLayer(inChannels * resolution * resolution, inChannels, activation: .lrelu)
            out = try FullyConnectedLayer(inChannels, cmapDim == 0 ? 1 : cmapDim)
        }

        public func callAsFunction(_ x: Tensor, _ img: Tensor?, cmap: Tensor?) throws -> Tensor {
            var h = try x.to(.float32)
            if let fromrgb {
                guard let img else { throw TorchError("DiscriminatorEpilogue: fromrgb needs an image") }
                h = try h + fromrgb(img.to(.float32))
            }
            if let mbstd { h = try mbstd(h) }
            h = try conv(h)
            h = try out(fc(h.flatten(1)))
            if cmapDim > 0 {
                guard let cmap else { throw TorchError("DiscriminatorEpilogue: conditioning needs a mapped label") }
                h = try (h * cmap).sum([1], keepDim: true) * (1 / Double(cmapDim).squareRoot())
            }
            return h
        }
    }

    /// MappingNetwork(z_dim=0, c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None): the label
    /// embedding, 2nd-moment normalised, through eight lrelu layers at lr multiplier 0.01.
    public final class MappingNetwork: Module {
        public let embed: FullyConnectedLayer
        public let layers: [FullyConnectedLayer]

        public init(cDim: Int, wDim: Int, numLayers: Int = 8, lrMultiplier: Double = 0.01) throws {
            embed = try FullyConnectedLayer(cDim, wDim)
            layers = try (0..<numLayers).map { _ in
                try FullyConnectedLayer(wDim, wDim, activation: .lrelu, lrMultiplier: lrMultiplier)
            }
        }

        /// Keys embed.*, fc0.*, fc1.*, … as in the reference.
        public override func listedChildren() -> [(String, Module)]? {
            [("embed", embed)] + layers.enumerated().map { ("fc\($0.offset)", $0.element) }
        }

        public func callAsFunction(_ labels: Tensor) throws -> Tensor {
            let y = try embed(labels.to(.float32))
            var x = try y * (y.square().mean([1], keepDim: true) + 1e-8).rsqrt()
            for layer in layers { x = try layer(x) }
            return x
        }
    }
}
