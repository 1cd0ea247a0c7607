// SafeTensors.swift — reading and writing the safetensors format (huggingface/safetensors), single
// files and sharded `*.safetensors.index.json`, mirroring `safetensors.torch.load_file/save_file`.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (padded with spaces to a multiple
// of 8 by the reference writer), then the data buffer. Each header entry is
// `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}` with offsets relative to the
// buffer; `__metadata__` is an optional string→string map.
//
// The header is untrusted input: everything is validated before any offset is used, and every
// failure is a thrown `SafeTensorsError` naming the file. Tensor data is read with pread straight
// into the destination tensor's storage (no mmap, no whole-file read), so loading a multi-GB
// checkpoint holds one copy of the weights.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Errors

public struct SafeTensorsError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public enum Kind: Sendable, Equatable {
        case io             // open/stat/read/write/rename failed
        case invalidHeader  // header length, JSON or structure is wrong
        case invalidEntry   // one tensor entry is wrong (dtype, shape, offsets, size, overlap)
        case missingKey     // the requested tensor is not in the file
        case shapeMismatch  // read(into:) destination shape differs
        case invalidIndex   // sharded index problems
        case invalidInput   // write() given bad names/tensors
        case torch          // a LibTorch error while allocating or copying
    }

    public let kind: Kind
    /// The file the error is about.
    public let path: String
    /// The tensor key, when the error concerns one tensor.
    public let key: String?
    /// What was expected and what was found.
    public let message: String

    public init(_ kind: Kind, path: String, key: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.key = key
        self.message = message
    }

    public var description: String {
        if let key { return "safetensors \(path): tensor '\(key)': \(message)" }
        return "safetensors \(path): \(message)"
    }

    public var errorDescription: String? { description }
}

// MARK: - Entries and the common read interface

public struct SafeTensorsEntry: Sendable, Equatable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    /// Byte range inside the data buffer (after the header) of `path`.
    public let byteRange: Range<Int>
    /// The file holding the data (the shard, for a sharded checkpoint).
    public let path: String

    public init(name: String, dtype: DType, shape: [Int], byteRange: Range<Int>, path: String) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteRange = byteRange
        self.path = path
    }

    public var numel: Int { shape.reduce(1, *) }
    public var byteCount: Int { byteRange.count }
}

/// Anything weights can be loaded from by key: a single safetensors file or a sharded index.
public protocol WeightSource: AnyObject {
    /// The file (or index file) this source was opened from.
    var path: String { get }
    /// All tensor keys, sorted.
    var keys: [String] { get }
    var entries: [String: SafeTensorsEntry] { get }
    /// dtype/shape of one key, nil when absent.
    func entry(_ name: String) -> SafeTensorsEntry?
    /// A new contiguous CPU tensor with the file's dtype and shape.
    func tensor(_ name: String) throws -> Tensor
    /// Reads `name` into an existing tensor of the same shape (any dtype/device; converted).
    func read(_ name: String, into destination: Tensor) throws
    func loadAll() throws -> [String: Tensor]
}

extension WeightSource {
    public func entry(_ name: String) -> SafeTensorsEntry? { entries[name] }

    public func loadAll() throws -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        out.reserveCapacity(entries.count)
        for k in keys { out[k] = try tensor(k) }
        return out
    }
}

/// Opens a `.safetensors` file or a `*.safetensors.index.json` sharded index (chosen by the name,
/// falling back to sniffing the first byte).
public func openWeights(path: String) throws -> any WeightSource {
    if path.hasSuffix(".index.json") { return try SafeTensorsIndex(path: path) }
    if path.hasSuffix(".safetensors") { return try SafeTensorsFile(path: path) }
    // Unknown extension: an index is JSON text starting with '{'; a safetensors file starts with
    // a binary length whose first byte is very unlikely to be '{' (would mean a ≥123-byte header
    // with specific length bits — still possible, so try safetensors when the index parse fails).
    if let fh = FileHandle(forReadingAtPath: path) {
        let first = (try? fh.read(upToCount: 1)) ?? nil
        try? fh.close()
        if let first, first.first == UInt8(ascii: "{") {
            if let idx = try? SafeTensorsIndex(path: path) { return idx }
        }
    }
    return try SafeTensorsFile(path: path)
}

// MARK: - Single file

public final class SafeTensorsFile: WeightSource, @unchecked Sendable {
    // @unchecked Sendable: all stored state is immutable after init, and pread is thread-safe.

    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderLength = 100_000_000

    public let path: String
    public let metadata: [String: String]
    public let entries: [String: SafeTensorsEntry]
    public let keys: [String]
    /// Size of the file when it was opened.
    public let fileSize: Int
    /// Absolute file offset of the data buffer (8 + header length).
    public let dataStart: Int

    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw SafeTensorsError(.io, path: path, "cannot open: \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer { if !ok { close(fd) } }

        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SafeTensorsError(.io, path: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw SafeTensorsError(.io, path: path, "not a regular file")
        }
        let size = Int(st.st_size)
        guard size >= 8 else {
            throw SafeTensorsError(.invalidHeader, path: path,
                                   "file is \(size) bytes; expected at least 8 (the header length)")
        }

        var lenBytes = [UInt8](repeating: 0, count: 8)
        try lenBytes.withUnsafeMutableBytes { try SafeTensorsFile.preadFully(fd, $0.baseAddress!, 8, 0, path: path, key: nil) }
        var headerLen64: UInt64 = 0
        for i in (0..<8).reversed() { headerLen64 = headerLen64 << 8 | UInt64(lenBytes[i]) }
        guard headerLen64 <= UInt64(SafeTensorsFile.maxHeaderLength) else {
            throw SafeTensorsError(.invalidHeader, path: path,
                                   "header length \(headerLen64) exceeds the limit of \(SafeTensorsFile.maxHeaderLength) bytes")
        }
        let headerLen = Int(headerLen64)
        guard headerLen <= size - 8 else {
            throw SafeTensorsError(.invalidHeader, path: path,
                                   "header length \(headerLen) goes beyond the file: expected at most \(size - 8) (file size \(size) − 8)")
        }
        guard headerLen >= 2 else {
            throw SafeTensorsError(.invalidHeader, path: path,
                                   "header length \(headerLen); expected at least 2 (a JSON object)")
        }
        var header = [UInt8](repeating: 0, count: headerLen)
        try header.withUnsafeMutableBytes { try SafeTensorsFile.preadFully(fd, $0.baseAddress!, headerLen, 8, path: path, key: nil) }

        let (meta, ents) = try SafeTensorsFile.parseHeader(header, dataSize: size - 8 - headerLen, path: path)
        self.metadata = meta
        self.entries = ents
        self.keys = ents.keys.sorted()
        self.fileSize = size
        self.dataStart = 8 + headerLen
        self.fd = fd
        ok = true
    }

    deinit { close(fd) }

    public func tensor(_ name: String) throws -> Tensor {
        let e = try requireEntry(name)
        let t = try torchCall(name) { try Tensor.empty(e.shape, dtype: e.dtype) }
        try readRaw(e, into: t)
        return t
    }

    public func read(_ name: String, into destination: Tensor) throws {
        let e = try requireEntry(name)
        let dstShape = destination.shape
        guard dstShape == e.shape else {
            throw SafeTensorsError(.shapeMismatch, path: path, key: name,
                                   "shape mismatch: file has \(e.shape), destination tensor has \(dstShape)")
        }
        if destination.dtype == e.dtype, destination.device == .cpu, destination.isContiguous {
            try readRaw(e, into: destination)
            return
        }
        // Different dtype, non-contiguous or non-CPU destination: go through a temporary.
        let tmp = try tensor(name)
        try torchCall(name) {
            // copy_ into a leaf parameter that requires grad is only allowed without autograd.
            try Torch.noGrad { try destination.copy_(tmp) }
        }
    }

    // MARK: internals

    private func requireEntry(_ name: String) throws -> SafeTensorsEntry {
        guard let e = entries[name] else {
            throw SafeTensorsError(.missingKey, path: path, key: name,
                                   "no such tensor (the file has \(entries.count) tensors)")
        }
        return e
    }

    private func torchCall<T>(_ key: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SafeTensorsError { throw e } catch {
            throw SafeTensorsError(.torch, path: path, key: key, "\(error)")
        }
    }

    /// Reads the entry's bytes straight into `t`'s storage (must be contiguous CPU of the entry's dtype).
    private func readRaw(_ e: SafeTensorsEntry, into t: Tensor) throws {
        guard e.byteCount > 0 else { return }
        let ptr = try torchCall(e.name) { try t.mutableDataPointer() }
        try SafeTensorsFile.preadFully(fd, ptr, e.byteCount, dataStart + e.byteRange.lowerBound, path: path, key: e.name)
    }

    static func preadFully(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int, _ offset: Int,
                           path: String, key: String?) throws {
        var done = 0
        while done < count {
            // Keep single calls below 1 GiB: Linux caps one read at ~2 GiB anyway.
            let chunk = min(count - done, 1 << 30)
            let n = pread(fd, buf + done, chunk, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw SafeTensorsError(.io, path: path, key: key,
                                       "read of \(count) bytes at offset \(offset) failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                throw SafeTensorsError(.io, path: path, key: key,
                                       "unexpected end of file: expected \(count) bytes at offset \(offset), got \(done) (was the file truncated after opening?)")
            }
            done += n
        }
    }

    // MARK: header validation

    static func parseHeader(_ bytes: [UInt8], dataSize: Int, path: String) throws
        -> (metadata: [String: String], entries: [String: SafeTensorsEntry]) {
        guard String(bytes: bytes, encoding: .utf8) != nil else {
            throw SafeTensorsError(.invalidHeader, path: path, "header is not valid UTF-8")
        }
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch let e as JSONParser.Failure {
            throw SafeTensorsError(.invalidHeader, path: path, "header is not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard case .object(let members) = root else {
            throw SafeTensorsError(.invalidHeader, path: path, "header must be a JSON object, found \(root.kindName)")
        }

        var metadata: [String: String] = [:]
        var entries: [String: SafeTensorsEntry] = [:]
        for (name, value) in members {
            if name == "__metadata__" {
                switch value {
                case .null: break
                case .object(let kv):
                    for (k, v) in kv {
                        guard case .string(let s) = v else {
                            throw SafeTensorsError(.invalidHeader, path: path,
                                                   "__metadata__['\(k)'] must be a string, found \(v.kindName)")
                        }
                        metadata[k] = s
                    }
                default:
                    throw SafeTensorsError(.invalidHeader, path: path,
                                           "__metadata__ must be an object of strings, found \(value.kindName)")
                }
                continue
            }
            entries[name] = try parseEntry(name, value, dataSize: dataSize, path: path)
        }

        // No two non-empty entries may share bytes.
        let sorted = entries.values.filter { !$0.byteRange.isEmpty }
            .sorted { ($0.byteRange.lowerBound, $0.name) < ($1.byteRange.lowerBound, $1.name) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.byteRange.upperBound > b.byteRange.lowerBound {
            throw SafeTensorsError(.invalidEntry, path: path, key: b.name,
                                   "data_offsets [\(b.byteRange.lowerBound), \(b.byteRange.upperBound)] overlap tensor '\(a.name)' at [\(a.byteRange.lowerBound), \(a.byteRange.upperBound)]")
        }
        return (metadata, entries)
    }

    private static func parseEntry(_ name: String, _ value: JSONValue, dataSize: Int, path: String) throws -> SafeTensorsEntry {
        func fail(_ msg: String) -> SafeTensorsError { SafeTensorsError(.invalidEntry, path: path, key: name, msg) }
        guard case .object(let fields) = value else {
            throw fail("entry must be an object with dtype, shape and data_offsets, found \(value.kindName)")
        }
        var dtypeV: JSONValue?, shapeV: JSONValue?, offsetsV: JSONValue?
        for (k, v) in fields {
            switch k {
            case "dtype": dtypeV = v
            case "shape": shapeV = v
            case "data_offsets": offsetsV = v
            default: break  // unknown fields are ignored, like the reference implementation
            }
        }
        guard let dtypeV else { throw fail("missing 'dtype'") }
        guard let shapeV else { throw fail("missing 'shape'") }
        guard let offsetsV else { throw fail("missing 'data_offsets'") }

        guard case .string(let dtypeName) = dtypeV else { throw fail("dtype must be a string, found \(dtypeV.kindName)") }
        guard let dtype = DType(safetensorsName: dtypeName) else {
            throw fail("unsupported dtype '\(dtypeName)'; expected one of \(DType.allCases.map(\.safetensorsName).joined(separator: ", "))")
        }

        guard case .array(let dims) = shapeV else { throw fail("shape must be an array, found \(shapeV.kindName)") }
        var shape: [Int] = []
        var numel = 1
        for (i, d) in dims.enumerated() {
            guard case .int(let n) = d, n >= 0 else {
                throw fail("shape[\(i)] must be a non-negative integer, found \(d.summary) (shape \(shapeV.summary))")
            }
            shape.append(n)
            let (p, o) = numel.multipliedReportingOverflow(by: n)
            guard !o else { throw fail("shape \(shapeV.summary) has too many elements") }
            numel = p
        }
        let (expectedBytes, o) = numel.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o else { throw fail("shape \(shapeV.summary) has too many bytes") }

        guard case .array(let offs) = offsetsV, offs.count == 2 else {
            throw fail("data_offsets must be an array [begin, end], found \(offsetsV.summary)")
        }
        guard case .int(let begin) = offs[0], case .int(let end) = offs[1], begin >= 0, end >= 0 else {
            throw fail("data_offsets must be two non-negative integers, found \(offsetsV.summary)")
        }
        guard begin <= end else { throw fail("data_offsets [\(begin), \(end)]: begin is after end") }
        guard end <= dataSize else {
            throw fail("data_offsets [\(begin), \(end)] out of range: the data buffer is \(dataSize) bytes (file truncated?)")
        }
        guard end - begin == expectedBytes else {
            throw fail("data_offsets [\(begin), \(end)] span \(end - begin) bytes; expected \(expectedBytes) = \(numel) elements of \(dtypeName) (\(dtype.byteSize) bytes) for shape \(shape)")
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, byteRange: begin..<end, path: path)
    }
}

// MARK: - Sharded index

/// A sharded checkpoint: `model.safetensors.index.json` with `weight_map` (key → shard file name,
/// relative to the index's folder).
public final class SafeTensorsIndex: WeightSource, @unchecked Sendable {
    public let path: String
    /// The index's `metadata` object with non-string values (e.g. total_size) rendered as text.
    public let metadata: [String: String]
    public let entries: [String: SafeTensorsEntry]
    public let keys: [String]
    /// Opened shards by file name as written in the index.
    public let shards: [String: SafeTensorsFile]
    private let owner: [String: SafeTensorsFile]

    public init(path: String) throws {
        self.path = path
        func fail(_ msg: String, key: String? = nil) -> SafeTensorsError {
            SafeTensorsError(.invalidIndex, path: path, key: key, msg)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SafeTensorsError(.io, path: path, "cannot read index file")
        }
        guard data.count <= SafeTensorsFile.maxHeaderLength else {
            throw fail("index is \(data.count) bytes; expected at most \(SafeTensorsFile.maxHeaderLength)")
        }
        let bytes = [UInt8](data)
        guard String(bytes: bytes, encoding: .utf8) != nil else { throw fail("index is not valid UTF-8") }
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch let e as JSONParser.Failure {
            throw fail("index is not valid JSON: \(e.message) at byte \(e.offset)")
        }
        guard case .object(let top) = root else { throw fail("index must be a JSON object, found \(root.kindName)") }
        var meta: [String: String] = [:]
        var weightMap: [(String, String)]?
        for (k, v) in top {
            if k == "metadata" {
                switch v {
                case .null: break
                case .object(let kv): for (mk, mv) in kv { meta[mk] = mv.textValue }
                default: throw fail("'metadata' must be an object, found \(v.kindName)")
                }
            } else if k == "weight_map" {
                guard case .object(let kv) = v else { throw fail("'weight_map' must be an object, found \(v.kindName)") }
                weightMap = try kv.map { key, file in
                    guard case .string(let f) = file, !f.isEmpty else {
                        throw fail("weight_map value must be a shard file name, found \(file.summary)", key: key)
                    }
                    return (key, f)
                }
            }
        }
        guard let weightMap else { throw fail("missing 'weight_map'") }

        let dir = (path as NSString).deletingLastPathComponent
        var shards: [String: SafeTensorsFile] = [:]
        for file in Set(weightMap.map(\.1)).sorted() {
            let full = file.hasPrefix("/") ? file : (dir.isEmpty ? file : dir + "/" + file)
            guard FileManager.default.fileExists(atPath: full) else {
                throw fail("shard '\(file)' does not exist (expected at \(full))")
            }
            shards[file] = try SafeTensorsFile(path: full)
        }

        // Every key of every shard must be unique across shards.
        var owner: [String: SafeTensorsFile] = [:]
        var ownerName: [String: String] = [:]
        var entries: [String: SafeTensorsEntry] = [:]
        for file in shards.keys.sorted() {
            let shard = shards[file]!
            for (k, e) in shard.entries {
                if let other = ownerName[k] {
                    throw fail("key appears in both shard '\(other)' and shard '\(file)'", key: k)
                }
                ownerName[k] = file
                owner[k] = shard
                entries[k] = e
            }
        }
        // The weight_map must agree with the shards' contents.
        for (k, file) in weightMap {
            guard let actual = ownerName[k] else {
                throw fail("weight_map says shard '\(file)' but no shard holds this key", key: k)
            }
            guard actual == file else {
                throw fail("weight_map says shard '\(file)' but the key is in shard '\(actual)'", key: k)
            }
        }
        self.metadata = meta
        self.shards = shards
        self.owner = owner
        self.entries = entries
        self.keys = entries.keys.sorted()
    }

    private func shard(_ name: String) throws -> SafeTensorsFile {
        guard let s = owner[name] else {
            throw SafeTensorsError(.missingKey, path: path, key: name,
                                   "no such tensor in any shard (\(entries.count) tensors in \(shards.count) shards)")
        }
        return s
    }

    public func tensor(_ name: String) throws -> Tensor { try shard(name).tensor(name) }

    public func read(_ name: String, into destination: Tensor) throws {
        try shard(name).read(name, into: destination)
    }
}

// MARK: - Writing

public enum SafeTensors {
    /// Opens a single file or sharded index (see `openWeights(path:)`).
    public static func open(_ path: String) throws -> any WeightSource { try openWeights(path: path) }

    /// Writes `tensors` with a sorted-key JSON header padded with spaces to a multiple of 8, like the
    /// reference writer, and the data in sorted-key order (so the bytes do not depend on the order
    /// of `tensors`). The data goes to a temporary file in the
    /// destination folder, is fsynced and then renamed over `path`; on any failure the temporary
    /// file is removed and `path` is left untouched.
    public static func write(_ tensors: [(String, Tensor)], metadata: [String: String]? = nil, to path: String) throws {
        func invalid(_ msg: String, key: String? = nil) -> SafeTensorsError {
            SafeTensorsError(.invalidInput, path: path, key: key, msg)
        }
        // Validate names and compute the layout before touching the disk.
        var seen = Set<String>()
        for (name, _) in tensors {
            guard !name.isEmpty else { throw invalid("empty tensor name") }
            guard name != "__metadata__" else { throw invalid("'__metadata__' is reserved", key: name) }
            guard seen.insert(name).inserted else { throw invalid("duplicate tensor name", key: name) }
        }
        var layout: [(name: String, tensor: Tensor, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
        var offset = 0
        for (name, t) in tensors.sorted(by: { $0.0 < $1.0 }) {
            let shape = t.shape
            let dtype = t.dtype
            let n = shape.reduce(1, *) * dtype.byteSize
            layout.append((name, t, dtype, shape, offset, offset + n))
            offset += n
        }

        var header = "{"
        var members: [(String, String)] = []
        if let metadata, !metadata.isEmpty {
            let m = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }.joined(separator: ",")
            members.append(("__metadata__", "{\(m)}"))
        }
        for l in layout {
            members.append((l.name, "{\"dtype\":\"\(l.dtype.safetensorsName)\",\"shape\":[\(l.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(l.begin),\(l.end)]}"))
        }
        members.sort { $0.0 < $1.0 }
        header += members.map { "\(jsonString($0.0)):\($0.1)" }.joined(separator: ",")
        header += "}"
        var headerBytes = Array(header.utf8)
        headerBytes += [UInt8](repeating: UInt8(ascii: " "), count: (8 - headerBytes.count % 8) % 8)
        guard headerBytes.count <= SafeTensorsFile.maxHeaderLength else {
            throw invalid("header would be \(headerBytes.count) bytes; the limit is \(SafeTensorsFile.maxHeaderLength)")
        }

        let dir = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let tmp = (dir.isEmpty ? "" : dir + "/") + ".\(base).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = Glibc_open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SafeTensorsError(.io, path: path, "cannot create temporary file \(tmp): \(String(cString: strerror(errno)))")
        }
        var committed = false
        var fdOpen = true
        defer {
            if fdOpen { close(fd) }
            if !committed { unlink(tmp) }
        }

        var lenLE = [UInt8](repeating: 0, count: 8)
        var len = UInt64(headerBytes.count)
        for i in 0..<8 { lenLE[i] = UInt8(len & 0xff); len >>= 8 }
        try writeFully(fd, lenLE, path: path, key: nil)
        try writeFully(fd, headerBytes, path: path, key: nil)
        for l in layout {
            let bytes: [UInt8]
            do { bytes = try l.tensor.contiguousBytes() } catch {
                throw SafeTensorsError(.torch, path: path, key: l.name, "cannot get tensor bytes: \(error)")
            }
            guard bytes.count == l.end - l.begin else {
                throw SafeTensorsError(.torch, path: path, key: l.name,
                                       "tensor gave \(bytes.count) bytes; expected \(l.end - l.begin)")
            }
            try writeFully(fd, bytes, path: path, key: l.name)
        }
        guard fsync(fd) == 0 else {
            throw SafeTensorsError(.io, path: path, "fsync failed: \(String(cString: strerror(errno)))")
        }
        fdOpen = false
        guard close(fd) == 0 else {
            throw SafeTensorsError(.io, path: path, "close failed: \(String(cString: strerror(errno)))")
        }
        guard rename(tmp, path) == 0 else {
            throw SafeTensorsError(.io, path: path, "cannot rename \(tmp) into place: \(String(cString: strerror(errno)))")
        }
        committed = true
        // Make the rename itself durable.
        let dfd = Glibc_open(dir.isEmpty ? "." : dir, O_RDONLY | O_CLOEXEC, 0)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }

    private static func writeFully(_ fd: Int32, _ bytes: [UInt8], path: String, key: String?) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc_write(fd, buf.baseAddress! + done, min(buf.count - done, 1 << 30))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw SafeTensorsError(.io, path: path, key: key, "write failed: \(String(cString: strerror(errno)))")
                }
                done += n
            }
        }
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if u.value < 0x20 {
                    out += String(format: "\\u%04x", u.value)
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}

// `open`/`write` are shadowed by SafeTensors.open / SafeTensorsFile members inside those types.
@inline(__always) private func Glibc_open(_ p: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(p, flags, mode) }
@inline(__always) private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

// MARK: - A small strict JSON parser
// Own parser instead of JSONSerialization: exact 64-bit integers (offsets), integers told apart from
// floats (shape 2.0 is invalid), duplicate keys rejected, bounded nesting depth (no stack overflow on
// hostile input), and the same behaviour on Linux and macOS.

enum JSONValue {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    case int(Int)
    case number(String)  // non-integer or out of Int range: kept as text
    case bool(Bool)
    case null

    var kindName: String {
        switch self {
        case .object: return "an object"
        case .array: return "an array"
        case .string: return "a string"
        case .int, .number: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        }
    }

    /// Short JSON-ish rendering for error messages.
    var summary: String {
        let s: String
        switch self {
        case .object(let m): s = "{" + m.map { "\"\($0.0)\": \($0.1.summary)" }.joined(separator: ", ") + "}"
        case .array(let a): s = "[" + a.map(\.summary).joined(separator: ", ") + "]"
        case .string(let v): s = "\"\(v)\""
        case .int(let v): s = String(v)
        case .number(let v): s = v
        case .bool(let v): s = String(v)
        case .null: s = "null"
        }
        return s.count > 120 ? String(s.prefix(117)) + "..." : s
    }

    var textValue: String {
        if case .string(let v) = self { return v }
        return summary
    }
}

struct JSONParser {
    struct Failure: Error {
        let message: String
        let offset: Int
    }

    static let maxDepth = 64

    private let b: [UInt8]
    private var i = 0

    static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        var p = JSONParser(b: bytes)
        p.skipWS()
        let v = try p.value(depth: 0)
        p.skipWS()
        guard p.i == bytes.count else { throw Failure(message: "unexpected trailing data", offset: p.i) }
        return v
    }

    private init(b: [UInt8]) { self.b = b }

    private func fail(_ m: String) -> Failure { Failure(message: m, offset: i) }

    private mutating func skipWS() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
    }

    private mutating func value(depth: Int) throws -> JSONValue {
        guard depth < JSONParser.maxDepth else { throw fail("nesting deeper than \(JSONParser.maxDepth)") }
        guard i < b.count else { throw fail("unexpected end of input") }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            var members: [(String, JSONValue)] = []
            var seen = Set<String>()
            skipWS()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            while true {
                skipWS()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let keyStart = i
                let k = try string()
                guard seen.insert(k).inserted else {
                    throw Failure(message: "duplicate key \"\(k)\"", offset: keyStart)
                }
                skipWS()
                guard i < b.count, b[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                skipWS()
                members.append((k, try value(depth: depth + 1)))
                skipWS()
                guard i < b.count else { throw fail("unexpected end of input in object") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [JSONValue] = []
            skipWS()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipWS()
                items.append(try value(depth: depth + 1))
                skipWS()
                guard i < b.count else { throw fail("unexpected end of input in array") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try number()
        default:
            throw fail("unexpected character")
        }
    }

    private mutating func literal(_ word: String) throws {
        let w = Array(word.utf8)
        guard i + w.count <= b.count, Array(b[i..<i + w.count]) == w else { throw fail("invalid literal") }
        i += w.count
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        func digits() -> Int {
            let s = i
            while i < b.count, b[i] >= 0x30, b[i] <= 0x39 { i += 1 }
            return i - s
        }
        if b[i] == UInt8(ascii: "-") { i += 1 }
        guard i < b.count else { throw fail("invalid number") }
        if b[i] == UInt8(ascii: "0") {
            i += 1
        } else {
            guard digits() > 0 else { throw fail("invalid number") }
        }
        var isInt = true
        if i < b.count, b[i] == UInt8(ascii: ".") {
            isInt = false
            i += 1
            guard digits() > 0 else { throw fail("invalid number") }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            isInt = false
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw fail("invalid number") }
        }
        let text = String(decoding: b[start..<i], as: UTF8.self)
        if isInt, let v = Int(text) { return .int(v) }
        return .number(text)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count else { throw fail("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("invalid \\u escape")
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func string() throws -> String {
        i += 1  // opening quote
        var out: [UInt8] = []
        while true {
            guard i < b.count else { throw fail("unterminated string") }
            let c = b[i]
            if c == UInt8(ascii: "\"") { i += 1; break }
            if c < 0x20 { throw fail("control character in string") }
            if c != UInt8(ascii: "\\") { out.append(c); i += 1; continue }
            i += 1
            guard i < b.count else { throw fail("unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): out.append(0x22)
            case UInt8(ascii: "\\"): out.append(0x5C)
            case UInt8(ascii: "/"): out.append(0x2F)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if (0xD800..<0xDC00).contains(cp) {
                    guard i + 2 <= b.count, b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") else {
                        throw fail("unpaired surrogate in \\u escape")
                    }
                    i += 2
                    let lo = try hex4()
                    guard (0xDC00..<0xE000).contains(lo) else { throw fail("invalid low surrogate in \\u escape") }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..<0xE000).contains(cp) {
                    throw fail("unpaired surrogate in \\u escape")
                }
                guard let scalar = Unicode.Scalar(cp) else { throw fail("invalid code point") }
                out.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw fail("invalid escape")
            }
        }
        // The whole header was validated as UTF-8 already, and escapes produce valid UTF-8.
        return String(decoding: out, as: UTF8.self)
    }
}
