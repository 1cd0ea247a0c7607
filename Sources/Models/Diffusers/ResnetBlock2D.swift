// ResnetBlock2D.swift — mirrors diffusers.models.resnet.ResnetBlock2D (diffusers 0.27).
import NN
import Torch

public final class ResnetBlock2D: Module {
    public struct Config: Codable, Sendable {
        public var in_channels: Int
        public var out_channels: Int?
        public var conv_shortcut: Bool = false
        public var dropout: Double = 0
        public var temb_channels: Int? = 512
        public var groups: Int = 32
        public var groups_out: Int?
        public var pre_norm: Bool = true
        public var eps: Double = 1e-6
        public var non_linearity: String = "swish"
        public var skip_time_act: Bool = false
        public var time_embedding_norm: String = "default"
        public var output_scale_factor: Double = 1
        public var use_in_shortcut: Bool?
        public var conv_shortcut_bias: Bool = true
        public var conv_2d_out_channels: Int?

        public init(in_channels: Int, out_channels: Int? = nil, temb_channels: Int? = 512, groups: Int = 32,
                    groups_out: Int? = nil, eps: Double = 1e-6, dropout: Double = 0, output_scale_factor: Double = 1,
                    time_embedding_norm: String = "default", non_linearity: String = "swish") {
            self.in_channels = in_channels
            self.out_channels = out_channels
            self.temb_channels = temb_channels
            self.groups = groups
            self.groups_out = groups_out
            self.eps = eps
            self.dropout = dropout
            self.output_scale_factor = output_scale_factor
            self.time_embedding_norm = time_embedding_norm
            self.non_linearity = non_linearity
        }

        enum K: String, CodingKey, CaseIterable {
            case in_channels, out_channels, conv_shortcut, dropout, temb_channels, groups, groups_out, pre_norm, eps,
                 non_linearity, skip_time_act, time_embedding_norm, kernel, output_scale_factor, use_in_shortcut, up,
                 down, conv_shortcut_bias, conv_2d_out_channels
        }

        public init(from decoder: Decoder) throws {
            try decoder.rejectUnknownKeys(K.allCases.map(\.rawValue))
            let c = try decoder.container(keyedBy: K.self)
            in_channels = try c.decode(Int.self, forKey: .in_channels)
            out_channels = try c.value(.out_channels, default: nil)
            conv_shortcut = try c.value(.conv_shortcut, default: false)
            dropout = try c.value(.dropout, default: 0)
            temb_channels = try c.value(.temb_channels, default: 512)
            groups = try c.value(.groups, default: 32)
            groups_out = try c.value(.groups_out, default: nil)
            pre_norm = try c.value(.pre_norm, default: true)
            eps = try c.value(.eps, default: 1e-6)
            non_linearity = try c.value(.non_linearity, default: "swish")
            skip_time_act = try c.value(.skip_time_act, default: false)
            time_embedding_norm = try c.value(.time_embedding_norm, default: "default")
            output_scale_factor = try c.value(.output_scale_factor, default: 1)
            use_in_shortcut = try c.value(.use_in_shortcut, default: nil)
            conv_shortcut_bias = try c.value(.conv_shortcut_bias, default: true)
            conv_2d_out_channels = try c.value(.conv_2d_out_channels, default: nil)
            for unsupported in [K.up, .down] where try c.value(unsupported, default: false) {
                throw TorchError("ResnetBlock2D: '\(unsupported.rawValue): true' is not supported (SD UNets resample in separate blocks)")
            }
            if let kernel: String = try c.value(.kernel, default: nil) {
                throw TorchError("ResnetBlock2D: kernel '\(kernel)' is not supported")
            }
        }
    }

    public let norm1: GroupNorm
    public let conv1: Conv2d
    public let time_emb_proj: Linear?
    public let norm2: GroupNorm
    public let dropout: Dropout
    public let conv2: Conv2d
    public let conv_shortcut: Conv2d?
    public let config: Config

    public init(_ config: Config) throws {
        self.config = config
        let outC = config.out_channels ?? config.in_channels
        let conv2Out = config.conv_2d_out_channels ?? outC
        norm1 = try GroupNorm(numGroups: config.groups, numChannels: config.in_channels, eps: config.eps)
        conv1 = try Conv2d(config.in_channels, outC, kernelSize: 3, padding: 1)
        switch (config.temb_channels, config.time_embedding_norm) {
        case (nil, _): time_emb_proj = nil
        case (let t?, "default"): time_emb_proj = try Linear(t, outC)
        case (let t?, "scale_shift"): time_emb_proj = try Linear(t, 2 * outC)
        case (_, let other): throw TorchError("ResnetBlock2D: unknown time_embedding_norm '\(other)'")
        }
        norm2 = try GroupNorm(numGroups: config.groups_out ?? config.groups, numChannels: outC, eps: config.eps)
        dropout = Dropout(config.dropout)
        conv2 = try Conv2d(outC, conv2Out, kernelSize: 3, padding: 1)
        let useShortcut = config.use_in_shortcut ?? (config.in_channels != conv2Out)
        conv_shortcut = useShortcut
            ? try Conv2d(config.in_channels, conv2Out, kernelSize: config.conv_shortcut ? 3 : 1,
                         padding: config.conv_shortcut ? 1 : 0, bias: config.conv_shortcut_bias)
            : nil
    }

    func act(_ x: Tensor) throws -> Tensor {
        switch config.non_linearity {
        case "swish", "silu": return try x.silu()
        case "mish": return try x * x.softplus().tanh()
        case "gelu": return try x.gelu()
        case "relu": return try x.relu()
        default: throw TorchError("ResnetBlock2D: unknown non_linearity '\(config.non_linearity)'")
        }
    }

    public func callAsFunction(_ input: Tensor, temb: Tensor?) throws -> Tensor {
        var h = try conv1(act(norm1(input)))
        var scaleShift: (Tensor, Tensor)?
        if let proj = time_emb_proj, let temb {
            let t = try proj(config.skip_time_act ? temb : act(temb)).unsqueeze(-1).unsqueeze(-1)
            if config.time_embedding_norm == "default" {
                h = try h + t
            } else {
                let parts = try t.chunk(2, dim: 1)
                scaleShift = (parts[0], parts[1])
            }
        }
        h = try norm2(h)
        if let (scale, shift) = scaleShift { h = try h * (scale + 1) + shift }
        h = try conv2(dropout(act(h)))
        let shortcut = try conv_shortcut.map { try $0(input) } ?? input
        let out = try shortcut + h
        return config.output_scale_factor == 1 ? out : try out / config.output_scale_factor
    }
}
