// PerceptualMetrics.swift — LPIPS between frames and TecoGAN's temporal LPIPS (tLP, Chu et al. 2020,
// "Learning temporal coherence via self-supervision for GAN-based video generation", metrics in
// TecoGAN's metrics.py): for consecutive frames, tLP_t = |LPIPS(g_{t−1}, g_t) − LPIPS(y_{t−1}, y_t)|,
// g generated, y ground truth (or driving), averaged over t = 1…n−1. LPIPS is Models' LPIPS
// (lpips 0.1, VGG or AlexNet) with user-given weights; without weights neither metric exists and the
// evaluation says "unavailable" — nothing is estimated.
import Foundation
import Logging
import Models
import Torch

public final class PerceptualMetric {
    let lpips: LPIPS
    public let weights: [String]
    let batch: Int

    /// LPIPS from the lpips package's weight files (plus torchvision's VGG16 or AlexNet, see LPIPS.loadWeights).
    public init(weights: [String], network: LPIPS.Network = .vgg, batch: Int = 8,
                logger: Logger = Logger(label: "personalive.evaluate")) throws {
        for w in weights where !FileManager.default.fileExists(atPath: w) {
            throw EvaluationError("\(w): LPIPS weight file not found")
        }
        lpips = try LPIPS(weights: weights, network: network)
        self.weights = weights
        self.batch = batch
        logger.info("LPIPS (\(network.rawValue), lpips 0.1) from \(weights.joined(separator: " + "))")
    }

    /// "vgg" or "alex".
    public var network: String { lpips.network.rawValue }

    /// Wraps an already-built LPIPS (tests).
    public init(lpips: LPIPS, name: String) {
        self.lpips = lpips
        weights = [name]
        batch = 8
    }

    /// LPIPS per pair (N,) of images (N, 3, H, W) in [0, 1].
    public func distances(_ a: Tensor, _ b: Tensor) throws -> [Double] {
        guard a.shape == b.shape, a.dim == 4 else { throw EvaluationError("LPIPS needs two batches of one shape, got \(a.shape) and \(b.shape)") }
        var out: [Double] = []
        var i = 0
        while i < a.shape[0] {
            let n = min(batch, a.shape[0] - i)
            let d = try Torch.noGrad {
                try lpips(a.narrow(0, start: i, length: n).to(.cpu).to(.float32), b.narrow(0, start: i, length: n).to(.cpu).to(.float32),
                          normalize: true)
            }
            out += try d.to(.float64).toArray(Double.self)
            i += n
        }
        return out
    }

    /// LPIPS between consecutive frames of a clip (n, 3, H, W): n − 1 values.
    public func consecutive(_ frames: Tensor) throws -> [Double] {
        let n = frames.shape[0]
        guard n >= 2 else { return [] }
        return try distances(frames.narrow(0, start: 0, length: n - 1), frames.narrow(0, start: 1, length: n - 1))
    }

    /// tLP per frame transition (n − 1 values): |LPIPS(g_{t−1}, g_t) − LPIPS(y_{t−1}, y_t)|.
    public func temporal(generated: Tensor, truth: Tensor) throws -> [Double] {
        try TemporalLPIPS.combine(generated: consecutive(generated), truth: consecutive(truth))
    }
}

public enum TemporalLPIPS {
    /// TecoGAN's combination of consecutive-frame LPIPS of the generated and the true sequence.
    public static func combine(generated: [Double], truth: [Double]) throws -> [Double] {
        guard generated.count == truth.count else {
            throw EvaluationError("tLP needs as many generated as true frame transitions (\(generated.count) vs \(truth.count))")
        }
        return zip(generated, truth).map { abs($0 - $1) }
    }
}
