// MediaTensors.swift — conversions between RGB images/frames and Torch tensors: uint8 HWC (as
// decoded) and float CHW in [-1, 1] or [0, 1] (as the VAE / motion extractor take them), and back.
import Torch

public enum PixelRange: Sendable {
    /// [-1, 1] (VAE, motion encoder).
    case signed
    /// [0, 1] (motion extractor, PoseGuider canvases).
    case unit
}

extension RGBImage {
    /// (H, W, 3) uint8.
    public func tensorHWC() throws -> Tensor {
        try pixels.withUnsafeBytes { try Tensor.fromBytes($0, shape: [height, width, 3], dtype: .uint8) }
    }

    /// (3, H, W) float32 in the given range.
    public func tensorCHW(_ range: PixelRange = .signed) throws -> Tensor {
        let hw = width * height
        var v = [Float](repeating: 0, count: 3 * hw)
        let (scale, shift): (Float, Float) = range == .signed ? (2 / 255, -1) : (1 / 255, 0)
        for i in 0..<hw {
            for c in 0..<3 { v[c * hw + i] = Float(pixels[i * 3 + c]) * scale + shift }
        }
        return try Tensor(v, shape: [3, height, width])
    }

    /// From an (H, W, 3) uint8 tensor.
    public init(hwc t: Tensor) throws {
        let s = t.shape
        guard s.count == 3, s[2] == 3, t.dtype == .uint8 else {
            throw MediaError(file: nil, "expected a (H, W, 3) uint8 tensor, got \(s) \(t.dtype)")
        }
        try self.init(width: s[1], height: s[0], pixels: try t.toArray(UInt8.self))
    }

    /// From a (3, H, W) float tensor in the given range (values are clamped and rounded).
    public init(chw t: Tensor, range: PixelRange = .signed) throws {
        let s = t.shape
        guard s.count == 3, s[0] == 3, t.dtype.isFloatingPoint else {
            throw MediaError(file: nil, "expected a (3, H, W) float tensor, got \(s) \(t.dtype)")
        }
        let v = try t.toArray(Float.self)
        let hw = s[1] * s[2]
        var px = [UInt8](repeating: 0, count: 3 * hw)
        for i in 0..<hw {
            for c in 0..<3 {
                let x = range == .signed ? (v[c * hw + i] + 1) * 127.5 : v[c * hw + i] * 255
                px[i * 3 + c] = UInt8(max(0, min(255, x.rounded())))
            }
        }
        try self.init(width: s[2], height: s[1], pixels: px)
    }
}
