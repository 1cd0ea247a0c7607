// SampleAugment.swift — per-frame extras the stage samplers attach (PersonaLive's training
// datasets): the square face crop with random aspect stretch and colour jitter at the motion-encoder
// size, the frame at the motion-extractor size, and face / eyes+mouth masks drawn from the boxes
// (filled rectangles, both corners inclusive, as cv2.rectangle). Writes straight into batch buffers.
import Media

enum SampleAugment {
    /// Writes an RGB image as 3×H×W floats `scale·v/255 + offset` at `offset` in `out`.
    static func writeCHW(_ img: RGBImage, into out: inout [Float], at base: Int, scale: Float, shift: Float) {
        let hw = img.width * img.height
        img.pixels.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<hw {
                    o[base + i] = Float(p[i * 3]) * scale + shift
                    o[base + hw + i] = Float(p[i * 3 + 1]) * scale + shift
                    o[base + 2 * hw + i] = Float(p[i * 3 + 2]) * scale + shift
                }
            }
        }
    }

    /// [-1, 1] as the VAE and the motion encoder expect.
    static func writeSigned(_ img: RGBImage, into out: inout [Float], at base: Int) {
        writeCHW(img, into: &out, at: base, scale: 2 / 255, shift: -1)
    }

    /// [0, 1] as the motion extractor expects.
    static func writeUnit(_ img: RGBImage, into out: inout [Float], at base: Int) {
        writeCHW(img, into: &out, at: base, scale: 1 / 255, shift: 0)
    }

    /// The image at `size`² (area filter when shrinking, bicubic when enlarging).
    static func resize(_ img: RGBImage, to size: Int) throws -> RGBImage {
        if img.width == size && img.height == size { return img }
        return try img.resized(width: size, height: size, filter: img.width > size ? .area : .bicubic)
    }

    /// The face crop box in frame pixels: a square of `scale`× the face box's longer side around its
    /// centre, one side stretched by a random factor (which side is random too).
    static func faceCropBox(_ face: Box, config: SamplerConfig, rng: inout SeededRandom) -> (Double, Double, Double, Double) {
        let side = Double(max(face.width, face.height, 1)) * config.faceCropScale
        let stretch = rng.uniform(config.stretch.lowerBound, config.stretch.upperBound)
        let wide = rng.unit() < 0.5
        let w = wide ? side * stretch : side, h = wide ? side : side * stretch
        let cx = Double(face.centerX), cy = Double(face.centerY)
        return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    }

    /// Brightness, contrast and saturation jitter (in that order), factors uniform in [1−s, 1+s].
    static func colourJitter(_ img: inout RGBImage, config: SamplerConfig, rng: inout SeededRandom) {
        let b = rng.uniform(1 - config.brightness, 1 + config.brightness)
        let c = rng.uniform(1 - config.contrast, 1 + config.contrast)
        let s = rng.uniform(1 - config.saturation, 1 + config.saturation)
        let n = img.width * img.height
        var mean = 0.0
        for i in 0..<n {
            let o = i * 3
            mean += 0.299 * Double(img.pixels[o]) + 0.587 * Double(img.pixels[o + 1]) + 0.114 * Double(img.pixels[o + 2])
        }
        mean = mean / Double(n) * b
        img.pixels.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                let o = i * 3
                var r = Double(p[o]) * b, g = Double(p[o + 1]) * b, bl = Double(p[o + 2]) * b
                r = (r - mean) * c + mean; g = (g - mean) * c + mean; bl = (bl - mean) * c + mean
                let gray = 0.299 * r + 0.587 * g + 0.114 * bl
                r = gray + (r - gray) * s; g = gray + (g - gray) * s; bl = gray + (bl - gray) * s
                p[o] = UInt8(max(0, min(255, r.rounded())))
                p[o + 1] = UInt8(max(0, min(255, g.rounded())))
                p[o + 2] = UInt8(max(0, min(255, bl.rounded())))
            }
        }
    }

    /// Fills the rectangle of `box` (pixels of a `size`² image, both corners inclusive) with 1.
    static func fillBox(_ box: Box, size: Int, into out: inout [Float], at base: Int) {
        let x1 = max(0, Int(box.x1.rounded(.down))), y1 = max(0, Int(box.y1.rounded(.down)))
        let x2 = min(size - 1, Int(box.x2.rounded(.down))), y2 = min(size - 1, Int(box.y2.rounded(.down)))
        guard x2 >= x1, y2 >= y1 else { return }
        for y in y1...y2 { for x in x1...x2 { out[base + y * size + x] = 1 } }
    }

    /// Face mask and eyes+mouth mask at `size`² from boxes given in a `frameSize`-wide frame.
    static func writeMasks(_ boxes: FaceBoxes, frameWidth: Int, frameHeight: Int, size: Int,
                           face: inout [Float], local: inout [Float], at base: Int) {
        let b = boxes.transformed(sx: Float(size) / Float(frameWidth), sy: Float(size) / Float(frameHeight), dx: 0, dy: 0)
        fillBox(b.face, size: size, into: &face, at: base)
        for e in [b.leftEye, b.rightEye, b.mouth] { fillBox(e, size: size, into: &local, at: base) }
    }

    /// Buffers for the extras of `count` frames.
    struct Extras {
        var faceCrop: [Float]
        var motionInput: [Float]
        var faceMask: [Float]
        var localMask: [Float]

        init(count: Int, config c: SamplerConfig) {
            faceCrop = [Float](repeating: 0, count: count * 3 * c.motionEncoderSize * c.motionEncoderSize)
            motionInput = [Float](repeating: 0, count: count * 3 * c.motionExtractorSize * c.motionExtractorSize)
            faceMask = [Float](repeating: 0, count: count * c.imageSize * c.imageSize)
            localMask = [Float](repeating: 0, count: count * c.imageSize * c.imageSize)
        }

        /// Fills slot `i` from a frame and its boxes.
        mutating func fill(_ i: Int, frame: RGBImage, boxes: FaceBoxes, config c: SamplerConfig, rng: inout SeededRandom) throws {
            let (x1, y1, x2, y2) = faceCropBox(boxes.face, config: c, rng: &rng)
            var crop = try frame.resampled(x1: x1, y1: y1, x2: x2, y2: y2, width: c.motionEncoderSize, height: c.motionEncoderSize, filter: .bilinear)
            colourJitter(&crop, config: c, rng: &rng)
            writeSigned(crop, into: &faceCrop, at: i * 3 * c.motionEncoderSize * c.motionEncoderSize)
            writeUnit(try resize(frame, to: c.motionExtractorSize), into: &motionInput, at: i * 3 * c.motionExtractorSize * c.motionExtractorSize)
            writeMasks(boxes, frameWidth: frame.width, frameHeight: frame.height, size: c.imageSize,
                       face: &faceMask, local: &localMask, at: i * c.imageSize * c.imageSize)
        }
    }
}
