// Resize.swift — separable resampling with PIL's algorithm (Image.resize with BILINEAR, BICUBIC,
// BOX, NEAREST): the filter support widens with the downscale factor, so shrinking is antialiased
// the way diffusers' PIL-based preprocessing is. Also resamples an arbitrary (possibly
// out-of-bounds) box, which the samplers use for face crops.
import Foundation

public enum ResizeFilter: String, CaseIterable, Sendable {
    case nearest, bilinear, bicubic
    /// Box filter (PIL BOX): the mean over each output pixel's footprint, i.e. area averaging.
    case area

    var support: Double {
        switch self {
        case .nearest: return 0
        case .bilinear: return 1
        case .bicubic: return 2
        case .area: return 0.5
        }
    }

    func weight(_ x: Double) -> Double {
        switch self {
        case .nearest:
            return 0
        case .area:
            return (x >= -0.5 && x < 0.5) ? 1 : 0
        case .bilinear:
            let a = abs(x)
            return a < 1 ? 1 - a : 0
        case .bicubic:
            // Keys cubic with a = -0.5, as PIL.
            let a = -0.5, t = abs(x)
            if t < 1 { return ((a + 2) * t - (a + 3)) * t * t + 1 }
            if t < 2 { return (((t - 5) * t + 8) * t - 4) * a }
            return 0
        }
    }
}

/// Per-output-pixel taps along one axis: the first input index, the tap count and the weights.
struct ResampleTaps {
    var start: [Int32]
    var count: [Int32]
    var weights: [Float]
    var ksize: Int
    /// Output pixels whose centre falls outside the input (filled with zero).
    var outside: [Bool]

    /// Taps for output pixels covering the input interval [lo, hi) (PIL's precompute_coeffs with a box).
    init(inSize: Int, outSize: Int, lo: Double, hi: Double, filter: ResizeFilter) {
        let scale = (hi - lo) / Double(outSize)
        start = .init(repeating: 0, count: outSize)
        count = .init(repeating: 0, count: outSize)
        outside = .init(repeating: false, count: outSize)
        if filter == .nearest {
            ksize = 1
            weights = .init(repeating: 1, count: outSize)
            for o in 0..<outSize {
                let c = lo + (Double(o) + 0.5) * scale
                if c < 0 || c >= Double(inSize) { outside[o] = true; continue }
                start[o] = Int32(min(inSize - 1, max(0, Int(c.rounded(.down)))))
                count[o] = 1
            }
            return
        }
        let filterscale = max(scale, 1)
        let support = filter.support * filterscale
        ksize = Int(support.rounded(.up)) * 2 + 1
        weights = .init(repeating: 0, count: outSize * ksize)
        let ss = 1 / filterscale
        for o in 0..<outSize {
            let center = lo + (Double(o) + 0.5) * scale
            if center < 0 || center >= Double(inSize) { outside[o] = true; continue }
            let xmin = max(Int((center - support + 0.5).rounded(.down)), 0)
            let xmax = min(Int((center + support + 0.5).rounded(.down)), inSize) - xmin
            var ww = 0.0
            var k = [Double](repeating: 0, count: max(xmax, 0))
            for x in 0..<max(xmax, 0) {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            let n = min(xmax, ksize)
            start[o] = Int32(xmin)
            count[o] = Int32(max(n, 0))
            for x in 0..<max(n, 0) { weights[o * ksize + x] = Float(ww != 0 ? k[x] / ww : 0) }
        }
    }
}

extension RGBImage {
    /// Resizes the whole image to `width` × `height`.
    public func resized(width w: Int, height h: Int, filter: ResizeFilter = .bicubic) throws -> RGBImage {
        if w == width && h == height { return self }
        return try resampled(x1: 0, y1: 0, x2: Double(width), y2: Double(height), width: w, height: h, filter: filter)
    }

    /// Resamples the box [x1, x2) × [y1, y2) (pixel coordinates, may be fractional and may extend past
    /// the image) to `width` × `height`. Output pixels whose centre maps outside the image are black.
    public func resampled(x1: Double, y1: Double, x2: Double, y2: Double, width w: Int, height h: Int,
                          filter: ResizeFilter = .bilinear) throws -> RGBImage {
        guard w > 0, h > 0 else { throw MediaError(file: nil, "resize target must be positive, got \(w)x\(h)") }
        guard x2 > x1, y2 > y1, x1.isFinite, y1.isFinite, x2.isFinite, y2.isFinite else {
            throw MediaError(file: nil, "resample box (\(x1),\(y1))-(\(x2),\(y2)) is empty or not finite")
        }
        let tx = ResampleTaps(inSize: width, outSize: w, lo: x1, hi: x2, filter: filter)
        let ty = ResampleTaps(inSize: height, outSize: h, lo: y1, hi: y2, filter: filter)
        // Only the input rows some output row reads go through the horizontal pass.
        var rowLo = height, rowHi = 0
        for o in 0..<h where !ty.outside[o] {
            rowLo = min(rowLo, Int(ty.start[o]))
            rowHi = max(rowHi, Int(ty.start[o] + ty.count[o]))
        }
        var out = [UInt8](repeating: 0, count: w * h * 3)
        if rowLo >= rowHi { return try RGBImage(width: w, height: h, pixels: out) }
        let rows = rowHi - rowLo
        var mid = [Float](repeating: 0, count: rows * w * 3)
        let srcW = width
        pixels.withUnsafeBufferPointer { src in
            mid.withUnsafeMutableBufferPointer { m in
                tx.weights.withUnsafeBufferPointer { wt in
                    for r in 0..<rows {
                        let srow = (r + rowLo) * srcW * 3
                        let mrow = r * w * 3
                        for o in 0..<w where !tx.outside[o] {
                            let s = Int(tx.start[o]), n = Int(tx.count[o]), kb = o * tx.ksize
                            var a0: Float = 0, a1: Float = 0, a2: Float = 0
                            for k in 0..<n {
                                let wk = wt[kb + k]
                                let p = srow + (s + k) * 3
                                a0 += wk * Float(src[p]); a1 += wk * Float(src[p + 1]); a2 += wk * Float(src[p + 2])
                            }
                            m[mrow + o * 3] = a0; m[mrow + o * 3 + 1] = a1; m[mrow + o * 3 + 2] = a2
                        }
                    }
                }
            }
        }
        mid.withUnsafeBufferPointer { m in
            out.withUnsafeMutableBufferPointer { d in
                ty.weights.withUnsafeBufferPointer { wt in
                    for o in 0..<h where !ty.outside[o] {
                        let s = Int(ty.start[o]) - rowLo, n = Int(ty.count[o]), kb = o * ty.ksize
                        let drow = o * w * 3
                        for i in 0..<(w * 3) {
                            var acc: Float = 0
                            for k in 0..<n { acc += wt[kb + k] * m[(s + k) * w * 3 + i] }
                            d[drow + i] = UInt8(max(0, min(255, (acc + 0.5).rounded(.down))))
                        }
                    }
                }
            }
        }
        return try RGBImage(width: w, height: h, pixels: out)
    }
}
