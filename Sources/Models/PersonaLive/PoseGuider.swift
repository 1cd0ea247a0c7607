// PoseGuider.swift — mirrors PersonaLive's src.models.pose_guider.PoseGuider: a small conv
// encoder from the rendered keypoint canvas to features added after the denoiser's conv_in.
// Every conv is an InflatedConv3d, i.e. a Conv2d applied to each frame of a (b, c, f, h, w) video.
import NN
import Torch

public final class PoseGuider: Module {
    public struct Config: Codable, Sendable, Equatable {
        public var conditioning_embedding_channels: Int = 320
        public var conditioning_channels: Int = 3
        public var block_out_channels: [Int] = [16, 32, 96, 256]

        public init(conditioning_embedding_channels: Int = 320, conditioning_channels: Int = 3,
                    block_out_channels: [Int] = [16, 32, 96, 256]) {
            self.conditioning_embedding_channels = conditioning_embedding_channels
            self.conditioning_channels = conditioning_channels
            self.block_out_channels = block_out_channels
        }

        enum K: String, CodingKey, CaseIterable {
            case conditioning_embedding_channels, conditioning_channels, block_out_channels
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            conditioning_embedding_channels = try c.value(.conditioning_embedding_channels, default: 320)
            conditioning_channels = try c.value(.conditioning_channels, default: 3)
            block_out_channels = try c.value(.block_out_channels, default: [16, 32, 96, 256])
            guard !block_out_channels.isEmpty else { throw TorchError("PoseGuider: block_out_channels is empty") }
        }
    }

    public let conv_in: Conv2d
    /// Pairs (same-width conv, stride-2 widening conv) per step, as the reference's flat ModuleList.
    public let blocks: [Conv2d]
    /// Zero-initialised in the reference so a fresh guider starts as a no-op on the UNet.
    public let conv_out_modify: Conv2d
    public let config: Config

    public init(_ config: Config = Config()) throws {
        self.config = config
        let ch = config.block_out_channels
        conv_in = try Conv2d(config.conditioning_channels, ch[0], kernelSize: 3, padding: 1)
        var blocks: [Conv2d] = []
        for i in 0..<(ch.count - 1) {
            blocks.append(try Conv2d(ch[i], ch[i], kernelSize: 3, padding: 1))
            blocks.append(try Conv2d(ch[i], ch[i + 1], kernelSize: 3, stride: 2, padding: 1))
        }
        self.blocks = blocks
        conv_out_modify = try Conv2d(ch[ch.count - 1], config.conditioning_embedding_channels, kernelSize: 3, padding: 1)
        super.init()
        if ParameterInit.mode != .uninitialized {
            try Torch.noGrad {
                try conv_out_modify.weight.zero_()
                try conv_out_modify.bias?.zero_()
            }
        }
    }

    /// conditioning: (b, c, f, h, w) video or (n, c, h, w) images in [0, 1]; returns the same
    /// layout with `conditioning_embedding_channels` channels at 1/2^(blocks) resolution.
    public func callAsFunction(_ conditioning: Tensor) throws -> Tensor {
        if conditioning.dim == 5 {
            let s = conditioning.shape
            let frames = try conditioning.permute([0, 2, 1, 3, 4]).reshape([s[0] * s[2], s[1], s[3], s[4]])
            let out = try forward2d(frames)
            let o = out.shape
            return try out.reshape([s[0], s[2], o[1], o[2], o[3]]).permute([0, 2, 1, 3, 4])
        }
        return try forward2d(conditioning)
    }

    private func forward2d(_ x: Tensor) throws -> Tensor {
        var h = try conv_in(x).silu()
        for block in blocks { h = try block(h).silu() }
        return try conv_out_modify(h)
    }
}
