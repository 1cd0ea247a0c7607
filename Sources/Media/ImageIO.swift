// ImageIO.swift — PNG and JPEG files through FFmpeg's codecs (read: any still image FFmpeg
// decodes; write: format from the extension, via a temporary file and rename).
import CFFmpeg
import Foundation
import Logging

public enum ImageFormat: String, Sendable {
    case png, jpeg

    /// The format a file name asks for (.png, .jpg, .jpeg).
    public init(path: String) throws {
        switch URL(fileURLWithPath: path).pathExtension.lowercased() {
        case "png": self = .png
        case "jpg", "jpeg": self = .jpeg
        case let ext: throw MediaError(file: path, "cannot tell the image format from the extension '\(ext)' (use .png, .jpg or .jpeg)")
        }
    }
}

public enum ImageIO {
    /// Decodes the first frame of an image file.
    public static func read(_ path: String, logger: Logger = Logger(label: "personalive.media")) throws -> RGBImage {
        let reader = try VideoReader(path: path, logger: logger)
        guard let image = try reader.nextFrame() else {
            throw MediaError(file: path, "contains no image")
        }
        return image
    }

    /// Encodes to PNG or JPEG bytes. `quality` (JPEG only) is 1...100, higher is better.
    public static func encode(_ image: RGBImage, format: ImageFormat, quality: Int = 95) throws -> [UInt8] {
        // FFmpeg's JPEG quantiser scale runs 1 (best) ... 31 (worst).
        let clamped: Int = max(1, min(100, quality))
        let scale: Int = 1 + (100 - clamped) * 30 / 99
        let q = Int32(scale)
        var out: UnsafeMutablePointer<UInt8>?
        var len = 0
        var err = [CChar](repeating: 0, count: 512)
        let r = image.pixels.withUnsafeBufferPointer {
            cff_image_encode($0.baseAddress, Int32(image.width), Int32(image.height), format == .png ? 0 : 1, q,
                             &out, &len, &err, err.count)
        }
        guard r >= 0, let out else {
            throw MediaError(file: nil, "cannot encode a \(image.width)x\(image.height) \(format.rawValue): \(String(cString: err))")
        }
        defer { cff_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: len))
    }

    /// Writes an image; the format comes from the extension.
    public static func write(_ image: RGBImage, to path: String, quality: Int = 95) throws {
        let format = try ImageFormat(path: path)
        let bytes: [UInt8]
        do {
            bytes = try encode(image, format: format, quality: quality)
        } catch let e as MediaError {
            throw MediaError(file: path, e.message)
        }
        try AtomicOutput.write(bytes, to: path)
    }
}
