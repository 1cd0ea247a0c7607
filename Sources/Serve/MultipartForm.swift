// MultipartForm.swift — a multipart/form-data body (RFC 7578) as named parts, through
// multipart-kit's parser (what Vapor and Hummingbird's multipart examples decode with).
import Foundation
import MultipartKit
import NIOCore

struct FormPart {
    let name: String
    let filename: String?
    let contentType: String?
    var bytes: [UInt8]
}

enum MultipartForm {
    /// The boundary of a `multipart/form-data; boundary=…` content type.
    static func boundary(of contentType: String?) throws -> String {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else {
            throw APIError(.unsupportedMediaType, "expected a multipart/form-data body (got \(contentType ?? "no content type"))")
        }
        for parameter in contentType.split(separator: ";").dropFirst() {
            let kv = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0].lowercased() == "boundary" {
                return kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        throw APIError(.badRequest, "the multipart/form-data content type has no boundary")
    }

    static func parse(_ body: ByteBuffer, boundary: String) throws -> [FormPart] {
        let parser = MultipartParser(boundary: boundary)
        var parts: [FormPart] = []
        var headers: [(String, String)] = []
        var bytes: [UInt8] = []
        parser.onHeader = { headers.append(($0, $1)) }
        parser.onBody = { buffer in bytes += buffer.readBytes(length: buffer.readableBytes) ?? [] }
        parser.onPartComplete = {
            let disposition = headers.first { $0.0.lowercased() == "content-disposition" }?.1 ?? ""
            let type = headers.first { $0.0.lowercased() == "content-type" }?.1
            parts.append(FormPart(name: parameter("name", in: disposition) ?? "", filename: parameter("filename", in: disposition),
                                  contentType: type, bytes: bytes))
            headers = []
            bytes = []
        }
        do {
            try parser.execute(body)
        } catch {
            throw APIError(.badRequest, "malformed multipart/form-data body (\(error))")
        }
        return parts
    }

    /// `name="value"` from a Content-Disposition header.
    static func parameter(_ key: String, in header: String) -> String? {
        for item in header.split(separator: ";") {
            let kv = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0].lowercased() == key {
                return kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            }
        }
        return nil
    }
}
