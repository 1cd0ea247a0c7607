// LPIPS.swift — mirrors lpips.LPIPS(net='vgg' | 'alex', version='0.1') of the `lpips` package
// (lpips/lpips.py, lpips/pretrained_networks.py): ScalingLayer, the torchvision VGG16 `features`
// split into net.slice1…slice5 (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3) — or torchvision
// AlexNet's `features` split after each ReLU (relu1…relu5) —, channel-normalised feature
// differences, 1×1 `lin0…lin4` heads (Dropout, Conv2d without bias) and a spatial average.
// Weights are loaded from user-given files with the lpips key names; torchvision's `features.N.*`
// names are accepted for the backbone.
import Foundation
import NN
import Torch

/// The feature network under LPIPS: five taps, torchvision `features` indices kept as child names.
public protocol LPIPSBackbone: Module {
    /// The five taps.
    func callAsFunction(_ x: Tensor) throws -> [Tensor]
}

public final class LPIPS: Module {
    /// lpips' `net` argument.
    public enum Network: String, Sendable, CaseIterable {
        case vgg, alex

        /// Channel widths of the five taps.
        public var channels: [Int] { self == .vgg ? [64, 128, 256, 512, 512] : [64, 192, 384, 256, 256] }
        /// Layer ranges of the slices in torchvision's `features`.
        var ranges: [Range<Int>] { self == .vgg ? VGG16Features.ranges : AlexNetFeatures.ranges }
    }

    /// Channel widths of the five VGG16 taps.
    public static let channels = Network.vgg.channels

    public let network: Network
    public let scaling_layer: ScalingLayer
    public let net: any LPIPSBackbone
    public let lin0: NetLinLayer
    public let lin1: NetLinLayer
    public let lin2: NetLinLayer
    public let lin3: NetLinLayer
    public let lin4: NetLinLayer

    public var lins: [NetLinLayer] { [lin0, lin1, lin2, lin3, lin4] }

    /// Builds the network (weights are PyTorch-default random until loaded), in eval mode with
    /// every parameter frozen: LPIPS is used as a fixed metric / loss, gradients flow to the inputs.
    /// `useDropout` keeps the heads' Dropout(0.5) (lpips' default; active only in training mode).
    public init(network: Network = .vgg, useDropout: Bool = true) throws {
        self.network = network
        scaling_layer = try ScalingLayer()
        net = network == .vgg ? try VGG16Features() : try AlexNetFeatures()
        let c = network.channels
        lin0 = try NetLinLayer(c[0], useDropout: useDropout)
        lin1 = try NetLinLayer(c[1], useDropout: useDropout)
        lin2 = try NetLinLayer(c[2], useDropout: useDropout)
        lin3 = try NetLinLayer(c[3], useDropout: useDropout)
        lin4 = try NetLinLayer(c[4], useDropout: useDropout)
        super.init()
        eval()
        try freeze()
    }

    /// Builds LPIPS and loads `paths` (see `loadWeights`).
    public convenience init(weights paths: [String], network: Network = .vgg) throws {
        try self.init(network: network)
        try loadWeights(paths)
    }

    /// Loads weights from one or more files (safetensors, or `.pth`/`.pt`/`.bin` PyTorch state
    /// dicts), merged in order. Accepted names: the lpips names (`net.sliceK.N.*`, `linK.model.1.weight`,
    /// `scaling_layer.*`), the duplicate `lins.K.*` aliases a full `LPIPS().state_dict()` carries,
    /// and torchvision VGG16 / AlexNet names (`features.N.*`; `classifier.*` is ignored) — so the lpips
    /// package's `vgg.pth` plus torchvision's `vgg16-397923af.pth` (or `alex.pth` plus
    /// `alexnet-owt-7be5be79.pth`) work as they are. Strict: every backbone and lin weight must be
    /// present (the scaling constants may be absent).
    @discardableResult
    public func loadWeights(_ paths: [String]) throws -> LoadReport {
        var merged: [String: Tensor] = [:]
        for path in paths {
            for (key, tensor) in try Self.readStateDict(path) {
                guard let name = Self.canonicalKey(key, network: network) else { continue }
                merged[name] = tensor
            }
        }
        return try load(from: TensorDictSource(merged, name: paths.joined(separator: " + ")),
                        allowMissing: ["scaling_layer.*"])
    }

    /// The lpips name for a key, or nil for keys that carry nothing LPIPS uses.
    static func canonicalKey(_ key: String, network: Network = .vgg) -> String? {
        if key.hasPrefix("classifier.") { return nil }
        if key.hasPrefix("features.") {
            let rest = key.dropFirst("features.".count)
            guard let dot = rest.firstIndex(of: "."), let index = Int(rest[..<dot]),
                  let slice = network.ranges.firstIndex(where: { $0.contains(index) }).map({ $0 + 1 }) else { return key }
            return "net.slice\(slice).\(index)\(rest[dot...])"
        }
        if key.hasPrefix("lins.") {
            let rest = key.dropFirst("lins.".count)
            guard let dot = rest.firstIndex(of: "."), let k = Int(rest[..<dot]) else { return key }
            return "lin\(k)\(rest[dot...])"
        }
        return key
    }

    static func readStateDict(_ path: String) throws -> [(String, Tensor)] {
        let ext = URL(fileURLWithPath: path).pathExtension.lowercased()
        if ext == "safetensors" || ext == "json" {
            let all = try openWeights(path: path).loadAll()
            return all.keys.sorted().map { ($0, all[$0]!) }
        }
        return try Pth.load(path: path)
    }

    /// Per-sample LPIPS distance (N,) between images (N, 3, H, W) in [-1, 1] (or in [0, 1] with
    /// `normalize`, which maps them to [-1, 1] first, as lpips' `normalize=True`).
    public func callAsFunction(_ x: Tensor, _ y: Tensor, normalize: Bool = false) throws -> Tensor {
        let maps = try distanceMaps(x, y, normalize: normalize)
        var total = try maps[0].mean([2, 3])
        for d in maps.dropFirst() { total = try total + d.mean([2, 3]) }
        return try total.reshape([-1])
    }

    /// The five per-layer maps lin_k((φ̂_k(x) − φ̂_k(y))²), each (N, 1, H_k, W_k), before averaging.
    public func distanceMaps(_ x: Tensor, _ y: Tensor, normalize: Bool = false) throws -> [Tensor] {
        guard x.dim == 4, x.shape == y.shape, x.shape[1] == 3 else {
            throw TorchError("LPIPS: inputs must be two (N, 3, H, W) images of one shape, got \(x.shape) and \(y.shape)")
        }
        var a = x, b = y
        if normalize { (a, b) = (try a * 2 - 1, try b * 2 - 1) }
        let fa = try net(scaling_layer(a)), fb = try net(scaling_layer(b))
        return try zip(zip(fa, fb), lins).map { pair, lin in
            try lin((Self.normalizeChannels(pair.0) - Self.normalizeChannels(pair.1)).square())
        }
    }

    /// lpips.normalize_tensor: x / (‖x‖₂ over channels + 1e-10).
    static func normalizeChannels(_ x: Tensor) throws -> Tensor {
        try x / (x.square().sum([1], keepDim: true).sqrt() + 1e-10)
    }

    // MARK: parts

    /// lpips.ScalingLayer: (x − shift) / scale with ImageNet-derived constants for [-1, 1] input.
    public final class ScalingLayer: Module {
        @Buffer public var shift: Tensor
        @Buffer public var scale: Tensor

        public init(shift: [Float] = [-0.030, -0.088, -0.188], scale: [Float] = [0.458, 0.448, 0.450]) throws {
            self.shift = try Tensor(shift, shape: [1, shift.count, 1, 1])
            self.scale = try Tensor(scale, shape: [1, scale.count, 1, 1])
        }

        public func callAsFunction(_ x: Tensor) throws -> Tensor {
            try (x - shift.to(x.device, x.dtype)) / scale.to(x.device, x.dtype)
        }
    }

    /// lpips.pretrained_networks.vgg16: torchvision `vgg16().features` cut into five slices that
    /// keep the features' global layer indices as child names.
    public final class VGG16Features: Module, LPIPSBackbone {
        /// Layer ranges of the slices in `features` (convs at the even offsets listed in `convs`).
        static let ranges = [0..<4, 4..<9, 9..<16, 16..<23, 23..<30]
        static let pools: Set<Int> = [4, 9, 16, 23]

        public let slice1: IndexedSequential
        public let slice2: IndexedSequential
        public let slice3: IndexedSequential
        public let slice4: IndexedSequential
        public let slice5: IndexedSequential

        public var slices: [IndexedSequential] { [slice1, slice2, slice3, slice4, slice5] }

        /// Which slice (1…5) holds `features[index]`.
        static func slice(ofLayer index: Int) -> Int? {
            ranges.firstIndex { $0.contains(index) }.map { $0 + 1 }
        }

        public init(inChannels: Int = 3) throws {
            // torchvision cfg "D": 64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512
            let widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
            var layers: [(Int, any UnaryLayer)] = []
            var index = 0, inC = inChannels, conv = 0
            while index < 30 {
                if Self.pools.contains(index) {
                    layers.append((index, MaxPool2d(kernel: 2, stride: 2)))
                    index += 1
                    continue
                }
                let outC = widths[conv]
                layers.append((index, try Conv2d(inC, outC, kernelSize: 3, padding: 1)))
                layers.append((index + 1, ReLU()))
                inC = outC
                conv += 1
                index += 2
            }
            let s = Self.ranges.map { r in IndexedSequential(layers.filter { r.contains($0.0) }) }
            (slice1, slice2, slice3, slice4, slice5) = (s[0], s[1], s[2], s[3], s[4])
        }

        /// The five taps relu1_2 … relu5_3.
        public func callAsFunction(_ x: Tensor) throws -> [Tensor] {
            var h = x
            return try slices.map { h = try $0(h); return h }
        }
    }

    /// lpips.pretrained_networks.alexnet: torchvision `alexnet().features` cut after each ReLU
    /// ([0:2], [2:5], [5:8], [8:10], [10:12]), global layer indices kept as child names.
    public final class AlexNetFeatures: Module, LPIPSBackbone {
        static let ranges = [0..<2, 2..<5, 5..<8, 8..<10, 10..<12]

        public let slice1: IndexedSequential
        public let slice2: IndexedSequential
        public let slice3: IndexedSequential
        public let slice4: IndexedSequential
        public let slice5: IndexedSequential

        public var slices: [IndexedSequential] { [slice1, slice2, slice3, slice4, slice5] }

        public init(inChannels: Int = 3) throws {
            let layers: [(Int, any UnaryLayer)] = [
                (0, try Conv2d(inChannels, 64, kernelSize: 11, stride: 4, padding: 2)), (1, ReLU()),
                (2, MaxPool2d(kernel: 3, stride: 2)),
                (3, try Conv2d(64, 192, kernelSize: 5, padding: 2)), (4, ReLU()),
                (5, MaxPool2d(kernel: 3, stride: 2)),
                (6, try Conv2d(192, 384, kernelSize: 3, padding: 1)), (7, ReLU()),
                (8, try Conv2d(384, 256, kernelSize: 3, padding: 1)), (9, ReLU()),
                (10, try Conv2d(256, 256, kernelSize: 3, padding: 1)), (11, ReLU()),
            ]
            let s = Self.ranges.map { r in IndexedSequential(layers.filter { r.contains($0.0) }) }
            (slice1, slice2, slice3, slice4, slice5) = (s[0], s[1], s[2], s[3], s[4])
        }

        /// The five taps relu1 … relu5.
        public func callAsFunction(_ x: Tensor) throws -> [Tensor] {
            var h = x
            return try slices.map { h = try $0(h); return h }
        }
    }

    /// lpips.NetLinLayer: `model` = Sequential(Dropout(0.5), Conv2d(c, 1, 1, bias=False)), or
    /// Sequential(Conv2d) without dropout (keys `model.1.weight` resp. `model.0.weight`).
    public final class NetLinLayer: Module, UnaryLayer {
        public let model: Sequential

        public init(_ channels: Int, outChannels: Int = 1, useDropout: Bool = true) throws {
            let conv = try Conv2d(channels, outChannels, kernelSize: 1, bias: false)
            model = Sequential(useDropout ? [Dropout(0.5), conv] : [conv])
        }

        /// The 1×1 head weight (1, c, 1, 1).
        public var weight: Tensor { (model.layers.last as! Conv2d).weight }

        public func callAsFunction(_ x: Tensor) throws -> Tensor { try model(x) }
    }

    /// nn.Sequential whose children keep given indices as names (torchvision slices).
    public final class IndexedSequential: Module, UnaryLayer {
        public let layers: [(Int, any UnaryLayer)]

        public init(_ layers: [(Int, any UnaryLayer)]) { self.layers = layers }

        public override func listedChildren() -> [(String, Module)]? { layers.map { ("\($0.0)", $0.1) } }

        public func callAsFunction(_ x: Tensor) throws -> Tensor { try layers.reduce(x) { try $1.1($0) } }
    }

    /// nn.ReLU.
    public final class ReLU: Module, UnaryLayer {
        public override init() {}
        public func callAsFunction(_ x: Tensor) throws -> Tensor { try x.relu() }
    }

    /// nn.MaxPool2d(kernel_size=k, stride=s) (VGG: 2, 2; AlexNet: 3, 2).
    public final class MaxPool2d: Module, UnaryLayer {
        let kernel: Int, stride: Int
        public init(kernel: Int = 2, stride: Int = 2) { (self.kernel, self.stride) = (kernel, stride) }
        public func callAsFunction(_ x: Tensor) throws -> Tensor {
            try F.maxPool2d(x, kernel: (kernel, kernel), stride: (stride, stride))
        }
    }
}
