// APIError.swift — the JSON error body every failed request gets ({"error": "…"}, with the
// HTTP status), as FastAPI's HTTPException / Hummingbird's HTTPError do, but always JSON so that
// clients can show the problem without parsing HTML.
import Foundation
import Hummingbird

public struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    public let status: HTTPResponse.Status
    public let message: String

    public init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { "\(status.code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var buffer = ByteBuffer()
        buffer.writeBytes(Self.body(message))
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: buffer))
    }

    /// {"error": message}, JSON-escaped.
    static func body(_ message: String) -> [UInt8] {
        (try? JSONSerialization.data(withJSONObject: ["error": message])).map { [UInt8]($0) } ?? Array(#"{"error":"?"}"#.utf8)
    }
}
