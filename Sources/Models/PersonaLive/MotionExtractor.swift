// MotionExtractor.swift — mirrors LivePortrait's MotionExtractor as vendored by PersonaLive
// (src.liveportrait.motion_extractor.MotionExtractor) with its ConvNeXtV2 detector
// (src.liveportrait.convnextv2.ConvNeXtV2, GRN and the channels-first LayerNorm from
// src.liveportrait.util). The detector predicts canonical keypoints, head-pose bins, translation,
// scale and expression; keypoint transforms and retargeting live in Keypoints.swift.
import Foundation
import NN
import Torch

/// LivePortrait's LayerNorm with data_format="channels_first": normalises over dim 1 of
/// (N, C, H, W), written out as the reference does (mean, biased variance, divide by sqrt).
public final class ChannelsFirstLayerNorm: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor
    public let eps: Double

    public init(_ channels: Int, eps: Double = 1e-6) throws {
        weight = try makeParameter([channels], .ones)
        bias = try makeParameter([channels], .zeros)
        self.eps = eps
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let u = try x.mean([1], keepDim: true)
        let centered = try x - u
        let s = try centered.square().mean([1], keepDim: true)
        let normed = try centered / (s + eps).sqrt()
        let c = weight.shape[0]
        return try weight.view([c, 1, 1]) * normed + bias.view([c, 1, 1])
    }
}

/// ConvNeXtV2's Global Response Normalisation over channels-last (N, H, W, C) maps.
/// gamma/beta start at zero in the reference, which makes a fresh GRN the identity.
public final class GlobalResponseNormalization: Module, UnaryLayer {
    public let gamma: Tensor
    public let beta: Tensor

    public init(_ dim: Int) throws {
        gamma = try makeParameter([1, 1, 1, dim], .zeros)
        beta = try makeParameter([1, 1, 1, dim], .zeros)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let gx = try x.norm(2, dims: [1, 2], keepDim: true)
        let nx = try gx / (gx.mean([-1], keepDim: true) + 1e-6)
        return try gamma * (x * nx) + beta + x
    }
}

/// ConvNeXtV2 Block: depthwise 7×7 conv, channels-last LayerNorm, 4× MLP with exact GELU and
/// GRN, residual. Drop-path is 0 in LivePortrait, so it is the identity and is not modelled.
public final class ConvNeXtV2Block: Module, UnaryLayer {
    public let dwconv: Conv2d
    public let norm: LayerNorm
    public let pwconv1: Linear
    public let grn: GlobalResponseNormalization
    public let pwconv2: Linear

    public init(dim: Int) throws {
        dwconv = try Conv2d(dim, dim, kernelSize: 7, padding: 3, groups: dim)
        norm = try LayerNorm(dim, eps: 1e-6)
        pwconv1 = try Linear(dim, 4 * dim)
        grn = try GlobalResponseNormalization(4 * dim)
        pwconv2 = try Linear(4 * dim, dim)
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = try dwconv(x).permute([0, 2, 3, 1])
        h = try pwconv2(grn(pwconv1(norm(h)).gelu()))
        return try x + h.permute([0, 3, 1, 2])
    }
}

/// The ConvNeXtV2 detector with LivePortrait's heads (fc_kp, fc_scale, fc_pitch, fc_yaw,
/// fc_roll, fc_t, fc_exp). Declaration order = the reference's state_dict order.
public final class ConvNeXtV2: Module {
    /// stem (conv 4×4/4 + LayerNorm), then 3 × (LayerNorm + conv 2×2/2).
    public let downsample_layers: [Sequential]
    public let stages: [Sequential]
    public let norm: LayerNorm
    public let fc_kp: Linear
    public let fc_scale: Linear
    public let fc_pitch: Linear
    public let fc_yaw: Linear
    public let fc_roll: Linear
    public let fc_t: Linear
    public let fc_exp: Linear

    public init(inChannels: Int = 3, depths: [Int] = [3, 3, 9, 3], dims: [Int] = [96, 192, 384, 768],
                numKeypoints: Int = 21, numBins: Int = 66) throws {
        guard depths.count == dims.count, !dims.isEmpty else {
            throw TorchError("ConvNeXtV2: depths \(depths) and dims \(dims) must be non-empty and of equal length")
        }
        var down: [Sequential] = [Sequential([try Conv2d(inChannels, dims[0], kernelSize: 4, stride: 4),
                                              try ChannelsFirstLayerNorm(dims[0])])]
        for i in 1..<dims.count {
            down.append(Sequential([try ChannelsFirstLayerNorm(dims[i - 1]),
                                    try Conv2d(dims[i - 1], dims[i], kernelSize: 2, stride: 2)]))
        }
        downsample_layers = down
        stages = try zip(depths, dims).map { depth, dim in
            Sequential(try (0..<depth).map { _ in try ConvNeXtV2Block(dim: dim) })
        }
        let last = dims[dims.count - 1]
        norm = try LayerNorm(last, eps: 1e-6)
        fc_kp = try Linear(last, 3 * numKeypoints)
        fc_scale = try Linear(last, 1)
        fc_pitch = try Linear(last, numBins)
        fc_yaw = try Linear(last, numBins)
        fc_roll = try Linear(last, numBins)
        fc_t = try Linear(last, 3)
        fc_exp = try Linear(last, 3 * numKeypoints)
    }

    /// Globally pooled, normalised features (N, dims.last).
    public func forwardFeatures(_ x: Tensor) throws -> Tensor {
        var h = x
        for (down, stage) in zip(downsample_layers, stages) { h = try stage(down(h)) }
        return try norm(h.mean([-2, -1]))
    }

    /// The head outputs for an image batch (N, 3, H, W) in [0, 1]. `exp` is computed only when
    /// asked: PersonaLive's forward leaves it out (commented out in the fork).
    public func callAsFunction(_ x: Tensor, includeExpression: Bool = false) throws -> KeypointInfo {
        let f = try forwardFeatures(x)
        return KeypointInfo(pitch: try fc_pitch(f), yaw: try fc_yaw(f), roll: try fc_roll(f), t: try fc_t(f),
                            scale: try fc_scale(f), kp: try fc_kp(f),
                            exp: includeExpression ? try fc_exp(f) : nil)
    }
}

/// MotionExtractor: the detector plus the idx_tensor buffer used to turn pose bins into degrees.
public final class MotionExtractor: Module {
    public struct Config: Codable, Sendable, Equatable {
        public var num_kp: Int = 21
        public var backbone: String = "convnextv2_tiny"
        public var num_bins: Int = 66
        /// ConvNeXtV2 sizes; the defaults are convnextv2_tiny (shrink them for tiny configs).
        public var depths: [Int] = [3, 3, 9, 3]
        public var dims: [Int] = [96, 192, 384, 768]

        public init(num_kp: Int = 21, num_bins: Int = 66, depths: [Int] = [3, 3, 9, 3],
                    dims: [Int] = [96, 192, 384, 768]) {
            self.num_kp = num_kp
            self.num_bins = num_bins
            self.depths = depths
            self.dims = dims
        }

        enum K: String, CodingKey, CaseIterable { case num_kp, backbone, num_bins, depths, dims }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            num_kp = try c.value(.num_kp, default: 21)
            let named: String = try c.value(.backbone, default: "convnextv2_tiny")
            num_bins = try c.value(.num_bins, default: 66)
            depths = try c.value(.depths, default: [3, 3, 9, 3])
            dims = try c.value(.dims, default: [96, 192, 384, 768])
            // The only backbone LivePortrait registers; fixture configs annotate it ("… (default)").
            guard named.split(separator: " ").first == "convnextv2_tiny" else {
                throw TorchError("MotionExtractor: unsupported backbone '\(named)' (only convnextv2_tiny)")
            }
            backbone = "convnextv2_tiny"
        }
    }

    /// arange(num_bins) as float32; a persistent buffer in the reference (first state_dict key).
    @Buffer public var idx_tensor: Tensor
    public let detector: ConvNeXtV2
    public let config: Config

    public init(_ config: Config = Config()) throws {
        self.config = config
        idx_tensor = try Tensor.arange(0, Double(config.num_bins), dtype: .float32)
        detector = try ConvNeXtV2(depths: config.depths, dims: config.dims, numKeypoints: config.num_kp,
                                  numBins: config.num_bins)
    }

    /// Keypoints of an image batch (N, 3, H, W) in [0, 1]: get_kp(detector(x)) → (N, num_kp, 3).
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try transformedKeypoints(detector(x))
    }
}
