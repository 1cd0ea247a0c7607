// MediaError.swift — the error thrown by the Media target: which file, what went wrong, and
// FFmpeg's own reason where there is one.

public struct MediaError: Error, CustomStringConvertible, Sendable {
    /// The file involved (nil for pure in-memory operations such as resizing).
    public let file: String?
    public let message: String

    public init(file: String?, _ message: String) {
        self.file = file
        self.message = message
    }

    public var description: String {
        if let file { return "\(file): \(message)" }
        return message
    }
}
