// ImageMetrics.swift — per-frame full-reference image metrics of the paper's self-reenactment table
// (REFERENCE.md §D: L1, SSIM; PSNR as well), computed as the usual Python tools compute them:
// - L1: mean absolute difference of images in [0, 1] over pixels and channels;
// - PSNR: 10·log10(data_range² / MSE) with data_range 1 (skimage.metrics.peak_signal_noise_ratio);
// - SSIM: skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
//   use_sample_covariance=False, data_range=1, channel_axis=…): an 11-tap Gaussian window (truncate
//   3.5 → radius 5), K1 0.01, K2 0.03, the SSIM map cropped by the window radius on every side (so
//   the border mode does not matter: a "valid" convolution gives the same map), averaged per channel
//   then over channels. pytorch-msssim's `ssim(…, win_size=11, win_sigma=1.5)` computes the same map.
// Everything runs in float64 on the CPU: frames are small and the metrics must match to 1e-4.
import Foundation
import Torch

public enum ImageMetrics {
    /// Window radius of skimage's Gaussian SSIM: int(truncate · σ + 0.5) with truncate 3.5, σ 1.5.
    public static let ssimRadius = 5
    public static let ssimSigma = 1.5

    static func prepare(_ a: Tensor, _ b: Tensor) throws -> (Tensor, Tensor) {
        guard a.dim == 4, a.shape == b.shape, a.shape[1] == 3 || a.shape[1] == 1 else {
            throw EvaluationError("image metrics need two (N, C, H, W) batches of one shape, got \(a.shape) and \(b.shape)")
        }
        return (try a.to(.cpu).to(.float64), try b.to(.cpu).to(.float64))
    }

    /// Mean absolute error per image (N,) of images (N, C, H, W) in [0, 1].
    public static func l1(_ a: Tensor, _ b: Tensor) throws -> [Double] {
        let (x, y) = try prepare(a, b)
        return try (x - y).abs().mean([1, 2, 3]).toArray(Double.self)
    }

    /// PSNR in dB per image (N,), data range 1; identical images give +∞ (as skimage does).
    public static func psnr(_ a: Tensor, _ b: Tensor) throws -> [Double] {
        let (x, y) = try prepare(a, b)
        let mse = try (x - y).square().mean([1, 2, 3]).toArray(Double.self)
        return mse.map { 10 * log10(1 / $0) }
    }

    /// The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter1d (σ 1.5, radius 5).
    public static func gaussianTaps(sigma: Double = ssimSigma, radius: Int = ssimRadius) -> [Double] {
        let w = (-radius...radius).map { exp(-0.5 * Double($0 * $0) / (sigma * sigma)) }
        let s = w.reduce(0, +)
        return w.map { $0 / s }
    }

    /// Mean SSIM per image (N,) of images (N, C, H, W) in [0, 1] (see the header); images must be at
    /// least 11 × 11.
    public static func ssim(_ a: Tensor, _ b: Tensor) throws -> [Double] {
        let (x, y) = try prepare(a, b)
        let c = x.shape[1], r = ssimRadius, k = 2 * r + 1
        guard x.shape[2] >= k, x.shape[3] >= k else {
            throw EvaluationError("SSIM needs images of at least \(k)×\(k) pixels, got \(x.shape[3])×\(x.shape[2])")
        }
        let g = gaussianTaps()
        let rowK = try Tensor(g, shape: [1, 1, 1, k]).expand([c, 1, 1, k]).contiguous()
        let colK = try Tensor(g, shape: [1, 1, k, 1]).expand([c, 1, k, 1]).contiguous()
        // Separable valid filtering per channel (groups = C).
        func filter(_ t: Tensor) throws -> Tensor {
            try F.conv2d(F.conv2d(t, weight: rowK, groups: c), weight: colK, groups: c)
        }
        let (c1, c2) = (0.01 * 0.01, 0.03 * 0.03)
        let ux = try filter(x), uy = try filter(y)
        let uxx = try filter(x * x), uyy = try filter(y * y), uxy = try filter(x * y)
        let vx = try uxx - ux * ux, vy = try uyy - uy * uy, vxy = try uxy - ux * uy
        let a1 = try ux * uy * 2 + c1, a2 = try vxy * 2 + c2
        let b1 = try ux * ux + uy * uy + c1, b2 = try vx + vy + c2
        let map = try (a1 * a2) / (b1 * b2)
        // Mean per channel, then over channels: with equal-sized channels this is the mean over both.
        return try map.mean([1, 2, 3]).toArray(Double.self)
    }
}

/// An evaluation input or computation that cannot go on; the message names the file or value.
public struct EvaluationError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
