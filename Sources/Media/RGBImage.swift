// RGBImage.swift — an 8-bit RGB image in memory (rows of packed R,G,B; HWC like a decoded frame,
// a PIL image or a numpy array from cv2 after BGR→RGB), with crop and pad.

public struct RGBImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// height × width × 3 bytes, row-major.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw MediaError(file: nil, "image size must be positive, got \(width)x\(height)")
        }
        guard pixels.count == width * height * 3 else {
            throw MediaError(file: nil, "image \(width)x\(height) needs \(width * height * 3) bytes, got \(pixels.count)")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// A solid-colour image.
    public init(width: Int, height: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        precondition(width > 0 && height > 0, "image size must be positive")
        self.width = width
        self.height = height
        var p = [UInt8](repeating: 0, count: width * height * 3)
        if fill != (0, 0, 0) {
            for i in stride(from: 0, to: p.count, by: 3) { p[i] = fill.0; p[i + 1] = fill.1; p[i + 2] = fill.2 }
        }
        self.pixels = p
    }

    @inline(__always)
    public func pixel(x: Int, y: Int) -> (UInt8, UInt8, UInt8) {
        let o = (y * width + x) * 3
        return (pixels[o], pixels[o + 1], pixels[o + 2])
    }

    /// The rectangle [x, x+w) × [y, y+h); it must lie inside the image.
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) throws -> RGBImage {
        guard w > 0, h > 0, x >= 0, y >= 0, x + w <= width, y + h <= height else {
            throw MediaError(file: nil, "crop \(w)x\(h) at (\(x),\(y)) is outside the \(width)x\(height) image")
        }
        var out = [UInt8](repeating: 0, count: w * h * 3)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for row in 0..<h {
                    let s = ((y + row) * width + x) * 3
                    let d = row * w * 3
                    for i in 0..<(w * 3) { dst[d + i] = src[s + i] }
                }
            }
        }
        return try RGBImage(width: w, height: h, pixels: out)
    }

    /// The largest centred square.
    public func centerSquareCropped() throws -> RGBImage {
        let side = min(width, height)
        return try cropped(x: (width - side) / 2, y: (height - side) / 2, width: side, height: side)
    }

    /// Adds borders of a constant colour.
    public func padded(top: Int, left: Int, bottom: Int, right: Int, fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) throws -> RGBImage {
        guard top >= 0, left >= 0, bottom >= 0, right >= 0 else {
            throw MediaError(file: nil, "padding must be non-negative, got top \(top) left \(left) bottom \(bottom) right \(right)")
        }
        var out = RGBImage(width: width + left + right, height: height + top + bottom, fill: fill)
        let w = width
        pixels.withUnsafeBufferPointer { src in
            out.pixels.withUnsafeMutableBufferPointer { dst in
                for row in 0..<height {
                    let s = row * w * 3
                    let d = ((row + top) * out.width + left) * 3
                    for i in 0..<(w * 3) { dst[d + i] = src[s + i] }
                }
            }
        }
        return out
    }

    /// Pads the shorter side symmetrically to make a square (letterboxing instead of cropping).
    public func paddedToSquare(fill: (UInt8, UInt8, UInt8) = (0, 0, 0)) throws -> RGBImage {
        let side = max(width, height)
        let dx = side - width, dy = side - height
        return try padded(top: dy / 2, left: dx / 2, bottom: dy - dy / 2, right: dx - dx / 2, fill: fill)
    }
}
