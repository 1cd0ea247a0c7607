// ImageBytes.swift — PNG/JPEG bytes from a client to RGB and back: uploads and WebSocket frames are
// recognised by their signature (so a non-image is refused by name before FFmpeg sees it), decoded
// through Media's FFmpeg image reader from a scratch file that is removed at once, and generated
// frames are encoded as JPEG in memory.
import Foundation
import Logging
import Media
import Torch

enum ImageBytes {
    /// "png" or "jpg" from the first bytes, nil for anything else.
    static func kind(_ bytes: [UInt8]) -> String? {
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "png" }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return "jpg" }
        return nil
    }

    /// Decodes a PNG or JPEG; `what` names it in errors ("reference", "frame 12").
    static func decode(_ bytes: [UInt8], what: String, scratch: URL, logger: Logger) throws -> RGBImage {
        guard let ext = kind(bytes) else {
            throw APIError(.badRequest, "\(what): not a PNG or JPEG image (\(bytes.count) bytes starting \(hexPrefix(bytes)))")
        }
        let file = scratch.appendingPathComponent("decode-\(UUID().uuidString).\(ext)")
        defer { try? FileManager.default.removeItem(at: file) }
        do {
            try Data(bytes).write(to: file)
            return try ImageIO.read(file.path, logger: logger)
        } catch {
            throw APIError(.badRequest, "\(what): the \(ext == "png" ? "PNG" : "JPEG") image does not decode (\(error))")
        }
    }

    /// A generated frame (3, S, S) in [0, 1] as JPEG bytes.
    static func jpeg(_ image: Tensor, quality: Int = 90) throws -> [UInt8] {
        try ImageIO.encode(RGBImage(chw: image.to(.cpu).to(.float32), range: .unit), format: .jpeg, quality: quality)
    }

    static func hexPrefix(_ bytes: [UInt8]) -> String {
        bytes.prefix(4).map { String(format: "%02x", $0) }.joined(separator: " ")
    }
}
