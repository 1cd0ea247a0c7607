// SafeTensorsTests.swift — safetensors read/write: dtype round trips, metadata, the shared
// fixtures, a file written by Python's safetensors, sharded indexes and a corpus of malformed files.
import Foundation
import Testing
@testable import Torch

private let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

private var fixturesRoot: URL {
    if let env = ProcessInfo.processInfo.environment["PERSONALIVE_FIXTURES"], !env.isEmpty {
        return URL(fileURLWithPath: env)
    }
    return packageRoot.appendingPathComponent("../shared/fixtures").standardizedFileURL
}

private let resources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Resources")

/// A fresh temporary folder, removed by the caller with `cleanup`.
private func makeTempDir() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("safetensors-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

private func cleanup(_ dir: URL) { try? FileManager.default.removeItem(at: dir) }

/// Decodes little-endian raw bytes as `T` values.
private func decode<T>(_ bytes: [UInt8], as: T.Type) -> [T] {
    bytes.withUnsafeBytes { raw in
        (0..<(raw.count / MemoryLayout<T>.size)).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
    }
}

/// A safetensors file from a header string, a data buffer and optionally a forged header length.
private func rawFile(_ header: String, data: [UInt8] = [], length: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var len = length ?? UInt64(h.count)
    var out: [UInt8] = []
    for _ in 0..<8 { out.append(UInt8(len & 0xff)); len >>= 8 }
    return out + h + data
}

@Suite("SafeTensors")
struct SafeTensorsTests {
    static let values: [Float] = [0, 1, -2, 3.5, 100, -128, 127, 0.25]

    /// Values exactly representable in `dtype`.
    static func values(for dtype: DType) -> [Float] {
        switch dtype {
        case .float32, .float64, .float16, .bfloat16: return values
        case .int64, .int32, .int16, .int8: return values.map { $0.rounded(.towardZero) }
        case .uint8: return values.map { abs($0.rounded(.towardZero)) }
        case .bool: return values.map { $0 == 0 ? 0 : 1 }
        }
    }

    @Test func roundTripEveryDType() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        let path = dir.appendingPathComponent("all.safetensors").path

        var written: [(String, Tensor)] = []
        for dtype in DType.allCases {
            let t = try Tensor(Self.values(for: dtype), shape: [2, 4]).to(dtype)
            written.append((dtype.safetensorsName, t))
        }
        let scalar = try Tensor([7.5] as [Float], shape: []).to(.float64)
        let empty = try Tensor.empty([0, 3], dtype: .bfloat16)
        let cube = try Tensor((0..<24).map { Float($0) - 12 }, shape: [2, 3, 4]).to(.int16)
        written += [("scalar", scalar), ("empty", empty), ("a.b.cube", cube)]
        // Reversed input order: the file must not depend on it.
        try SafeTensors.write(written.reversed(), to: path)

        let f = try SafeTensorsFile(path: path)
        #expect(f.keys == written.map(\.0).sorted())
        #expect(f.metadata.isEmpty)
        for (name, original) in written {
            let e = try #require(f.entries[name])
            #expect(e.dtype == original.dtype, "\(name)")
            #expect(e.shape == original.shape, "\(name)")
            let back = try f.tensor(name)
            #expect(back.dtype == original.dtype, "\(name)")
            #expect(back.shape == original.shape, "\(name)")
            #expect(try back.contiguousBytes() == original.contiguousBytes(), "\(name) bytes differ")
        }
        for dtype in DType.allCases {
            let back = try f.tensor(dtype.safetensorsName)
            #expect(try back.to(.float32).toArray(Float.self) == Self.values(for: dtype), "\(dtype) values")
        }
        #expect(try f.tensor("scalar").to(.float32).toArray(Float.self) == [7.5])
        #expect(try f.tensor("a.b.cube").to(.float32).toArray(Float.self) == (0..<24).map { Float($0) - 12 })

        let all = try f.loadAll()
        #expect(all.count == written.count)
    }

    @Test func headerLayoutMatchesReference() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        let path = dir.appendingPathComponent("layout.safetensors").path
        let b = try Tensor([1, 2, 3] as [Float], shape: [3])
        let a = try Tensor([4, 5] as [Float], shape: [2]).to(.float64)
        try SafeTensors.write([("b", b), ("a", a)], metadata: ["z": "1", "format": "pt"], to: path)

        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = Int(decode(Array(bytes[0..<8]), as: UInt64.self)[0])
        #expect(n % 8 == 0)
        let header = String(decoding: bytes[8..<(8 + n)], as: UTF8.self)
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        #expect(header.hasPrefix(trimmed) && header.dropFirst(trimmed.count).allSatisfy { $0 == " " })
        #expect(trimmed == #"{"__metadata__":{"format":"pt","z":"1"},"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}"#)
        #expect(bytes.count == 8 + n + 28)
        #expect(decode(Array(bytes[(8 + n)..<(8 + n + 16)]), as: Double.self) == [4, 5])
        #expect(decode(Array(bytes[(8 + n + 16)...]), as: Float.self) == [1, 2, 3])
    }

    @Test func metadataRoundTrip() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        let path = dir.appendingPathComponent("meta.safetensors").path
        let meta = ["format": "pt", "step": "1200", "quote\"back\\slash": "line\nbreak\ttab \u{01} ünïcødé 🙂", "": "empty key"]
        try SafeTensors.write([("w", try Tensor([1, 2] as [Float], shape: [2]))], metadata: meta, to: path)
        let f = try SafeTensorsFile(path: path)
        #expect(f.metadata == meta)
        #expect(f.keys == ["w"])
    }

    @Test func readIntoExistingTensors() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        let path = dir.appendingPathComponent("into.safetensors").path
        try SafeTensors.write([("w", try Tensor([1, -2, 3, -4, 5, -6] as [Float], shape: [2, 3]))], to: path)
        let f = try SafeTensorsFile(path: path)

        let same = try Tensor.empty([2, 3], dtype: .float32)
        try f.read("w", into: same)
        #expect(try same.toArray(Float.self) == [1, -2, 3, -4, 5, -6])

        let wider = try Tensor.empty([2, 3], dtype: .float64)
        try f.read("w", into: wider)
        #expect(wider.dtype == .float64)
        #expect(try wider.to(.float32).toArray(Float.self) == [1, -2, 3, -4, 5, -6])

        let half = try Tensor.empty([2, 3], dtype: .bfloat16)
        try f.read("w", into: half)
        #expect(try half.to(.float32).toArray(Float.self) == [1, -2, 3, -4, 5, -6])

        let wrong = try Tensor.empty([3, 2], dtype: .float32)
        let e1 = try #require(throws: SafeTensorsError.self) { try f.read("w", into: wrong) }
        #expect(e1.kind == .shapeMismatch)
        #expect(e1.description.contains("'w'") && e1.description.contains("[2, 3]") && e1.description.contains("[3, 2]"))
        #expect(e1.description.contains("into.safetensors"))

        let e2 = try #require(throws: SafeTensorsError.self) { try f.tensor("nope") }
        #expect(e2.kind == .missingKey)
        #expect(e2.description.contains("'nope'") && e2.description.contains("into.safetensors"))
    }

    @Test func pythonWrittenFileLoads() throws {
        let path = resources.appendingPathComponent("python_written.safetensors").path
        let f = try SafeTensorsFile(path: path)
        #expect(f.metadata == ["format": "pt", "made_by": "gen_python_safetensors.py"])
        #expect(f.keys == ["bf16", "bool", "empty", "f16", "f32", "f64", "i16", "i32", "i64", "i8", "nested.module.weight", "scalar", "u8"])

        func bytes(_ k: String, _ dtype: DType, _ shape: [Int]) throws -> [UInt8] {
            let t = try f.tensor(k)
            #expect(t.dtype == dtype, "\(k) dtype")
            #expect(t.shape == shape, "\(k) shape")
            return try t.contiguousBytes()
        }
        #expect(decode(try bytes("f32", .float32, [2, 3]), as: Float.self) == [-1, -0.5, 0, 0.5, 1, 1.5])
        #expect(decode(try bytes("f64", .float64, [2]), as: Double.self) == [Double.pi, -1e-300])
        #expect(decode(try bytes("f16", .float16, [3]), as: UInt16.self) == [0x3800, 0xBC00, 0x7BFF])
        #expect(decode(try bytes("bf16", .bfloat16, [3]), as: UInt16.self) == [0x3FC0, 0xC010, 0x7F62])
        #expect(decode(try bytes("i64", .int64, [3]), as: Int64.self) == [-(1 << 40), 0, 7])
        #expect(decode(try bytes("i32", .int32, [2, 1]), as: Int32.self) == [-5, 1 << 30])
        #expect(decode(try bytes("i16", .int16, [2]), as: Int16.self) == [-32768, 32767])
        #expect(decode(try bytes("i8", .int8, [3]), as: Int8.self) == [-128, 127, 0])
        #expect(try bytes("u8", .uint8, [3]) == [0, 255, 7])
        #expect(try bytes("bool", .bool, [3]) == [1, 0, 1])
        #expect(try bytes("empty", .float32, [0, 3]).isEmpty)
        #expect(decode(try bytes("scalar", .float32, []), as: Float.self) == [42])
        #expect(try f.tensor("nested.module.weight").toArray(Float.self) == [1, 1, 1, 1])
        #expect(try openWeights(path: path).keys == f.keys)
    }

    @Test func everyFixtureFileLoads() throws {
        let root = fixturesRoot
        var isDir: ObjCBool = false
        try #require(FileManager.default.fileExists(atPath: root.path, isDirectory: &isDir) && isDir.boolValue,
                     "fixtures not found at \(root.path) (set PERSONALIVE_FIXTURES)")
        let walker = try #require(FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil))
        var files: [URL] = []
        for case let url as URL in walker where url.pathExtension == "safetensors" { files.append(url) }
        files.sort { $0.path < $1.path }
        #expect(files.contains { $0.lastPathComponent == "weights.safetensors" })
        #expect(files.contains { $0.lastPathComponent == "io.safetensors" })

        var tensors = 0
        for url in files {
            let f = try SafeTensorsFile(path: url.path)
            #expect(!f.keys.isEmpty, "\(url.path) has no tensors")
            // Independent check: the loaded bytes equal the file's bytes at the entry's range.
            let raw = try Data(contentsOf: url)
            for (k, t) in try f.loadAll() {
                let e = try #require(f.entries[k])
                #expect(t.shape == e.shape && t.dtype == e.dtype, "\(url.path): \(k)")
                let start = f.dataStart + e.byteRange.lowerBound
                let expected = [UInt8](raw[start..<(start + e.byteCount)])
                #expect(try t.contiguousBytes() == expected, "\(url.path): \(k) bytes")
                tensors += 1
            }
        }
        #expect(files.count >= 2 && tensors > 0)
    }

    @Test func shardedIndex() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        try SafeTensors.write([("a", try Tensor([1, 2] as [Float], shape: [2])), ("b", try Tensor([3] as [Float], shape: [1]))],
                              to: dir.appendingPathComponent("model-00001-of-00002.safetensors").path)
        try SafeTensors.write([("c", try Tensor([4, 5, 6] as [Float], shape: [3]).to(.float16))],
                              to: dir.appendingPathComponent("model-00002-of-00002.safetensors").path)
        let index = dir.appendingPathComponent("model.safetensors.index.json").path
        try #"{"metadata": {"total_size": 18}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}"#
            .write(toFile: index, atomically: true, encoding: .utf8)

        let w = try openWeights(path: index)
        #expect(w is SafeTensorsIndex)
        #expect(w.keys == ["a", "b", "c"])
        #expect(w.entry("c")?.dtype == .float16 && w.entry("c")?.shape == [3])
        #expect(w.entry("zzz") == nil)
        #expect(try w.tensor("a").toArray(Float.self) == [1, 2])
        let c = try Tensor.empty([3], dtype: .float32)
        try w.read("c", into: c)
        #expect(try c.toArray(Float.self) == [4, 5, 6])
        #expect(try w.loadAll().count == 3)
        #expect((w as? SafeTensorsIndex)?.metadata["total_size"] == "18")

        func expectIndexError(_ json: String, _ fragment: String) throws {
            try json.write(toFile: index, atomically: true, encoding: .utf8)
            let e = try #require(throws: SafeTensorsError.self) { _ = try SafeTensorsIndex(path: index) }
            #expect(e.description.contains("model.safetensors.index.json"), "\(e)")
            #expect(e.description.contains(fragment), "\(e) should mention \(fragment)")
        }
        try expectIndexError(#"{"weight_map": {"a": "missing.safetensors"}}"#, "missing.safetensors")
        try expectIndexError(#"{"weight_map": {"a": "model-00002-of-00002.safetensors"}}"#, "'a'")
        try expectIndexError(#"{"weight_map": {"zz": "model-00001-of-00002.safetensors"}}"#, "'zz'")
        try expectIndexError(#"{"metadata": {}}"#, "weight_map")
        try expectIndexError(#"{"weight_map": ["a"]}"#, "weight_map")
        try expectIndexError("not json", "JSON")

        // A key held by two shards.
        try SafeTensors.write([("a", try Tensor([9] as [Float], shape: [1]))],
                              to: dir.appendingPathComponent("model-00002-of-00002.safetensors").path)
        try expectIndexError(#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#, "both")
    }

    @Test func failedWriteLeavesNothing() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        let t = try Tensor([1, 2] as [Float], shape: [2])

        let nowhere = dir.appendingPathComponent("no/such/dir/x.safetensors").path
        let e1 = try #require(throws: SafeTensorsError.self) { try SafeTensors.write([("w", t)], to: nowhere) }
        #expect(e1.description.contains("x.safetensors"))
        #expect(!FileManager.default.fileExists(atPath: nowhere))

        let dest = dir.appendingPathComponent("dup.safetensors").path
        let e2 = try #require(throws: SafeTensorsError.self) { try SafeTensors.write([("w", t), ("w", t)], to: dest) }
        #expect(e2.description.contains("dup.safetensors") && e2.description.contains("'w'"))
        #expect(!FileManager.default.fileExists(atPath: dest))

        // An existing file survives a failed overwrite untouched.
        try SafeTensors.write([("keep", t)], to: dest)
        let before = try Data(contentsOf: URL(fileURLWithPath: dest))
        #expect(throws: SafeTensorsError.self) { try SafeTensors.write([("__metadata__", t)], to: dest) }
        #expect(throws: SafeTensorsError.self) { try SafeTensors.write([("", t)], to: dest) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: dest)) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["dup.safetensors"])
    }

    @Test func fileTruncatedAfterOpeningThrowsOnRead() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        let path = dir.appendingPathComponent("shrinks.safetensors").path
        try SafeTensors.write([("w", try Tensor([Float](repeating: 1, count: 64), shape: [64]))], to: path)
        let f = try SafeTensorsFile(path: path)
        let fh = try #require(FileHandle(forWritingAtPath: path))
        try fh.truncate(atOffset: UInt64(f.dataStart + 10))
        try fh.close()
        let e = try #require(throws: SafeTensorsError.self) { try f.tensor("w") }
        #expect(e.kind == .io && e.description.contains("shrinks.safetensors") && e.description.contains("'w'"))
    }

    @Test func malformedFilesThrow() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }

        let entry = #"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
        let eight = [UInt8](repeating: 0, count: 8)
        var deep = String(repeating: "[", count: 100_000)
        deep += String(repeating: "]", count: 100_000)

        // A valid file with its last bytes cut off.
        let validPath = dir.appendingPathComponent("valid.safetensors").path
        try SafeTensors.write([("w", try Tensor([Float](repeating: 2, count: 16), shape: [4, 4]))], to: validPath)
        let valid = [UInt8](try Data(contentsOf: URL(fileURLWithPath: validPath)))
        try FileManager.default.removeItem(atPath: validPath)

        let corpus: [(String, [UInt8])] = [
            ("empty_file", []),
            ("five_bytes", [1, 2, 3, 4, 5]),
            ("truncated_data", Array(valid.dropLast(4))),
            ("truncated_header", Array(valid.prefix(20))),
            ("header_len_beyond_file", rawFile(#"{"w":\#(entry)}"#, data: eight, length: 4096)),
            ("header_len_huge", rawFile("{}", length: 200_000_000)),
            ("header_len_u64_max", rawFile("{}", length: UInt64.max)),
            ("header_len_zero", rawFile("{}", length: 0)),
            ("non_json_header", rawFile("this is not json", data: eight)),
            ("json_trailing_garbage", rawFile(#"{"w":\#(entry)} x"#, data: eight)),
            ("invalid_utf8_header", [4, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0xFF, 0xFE, 0x7D]),
            ("header_is_array", rawFile("[1,2,3]", data: eight)),
            ("header_is_string", rawFile(#""hello""#, data: eight)),
            ("deeply_nested", rawFile(deep)),
            ("unknown_dtype", rawFile(#"{"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, data: eight)),
            ("fp8_dtype", rawFile(#"{"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}}"#, data: eight)),
            ("dtype_not_string", rawFile(#"{"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}}"#, data: eight)),
            ("size_mismatch", rawFile(#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}}"#, data: eight)),
            ("offsets_out_of_range", rawFile(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: eight)),
            ("offsets_huge", rawFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[99999999999999999999,100000000000000000007]}}"#, data: eight)),
            ("offsets_negative", rawFile(#"{"w":{"dtype":"U8","shape":[2],"data_offsets":[-2,0]}}"#, data: eight)),
            ("offsets_three", rawFile(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}"#, data: eight)),
            ("begin_after_end", rawFile(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, data: eight)),
            ("overlapping_offsets", rawFile(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: eight + eight)),
            ("same_offsets", rawFile(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}}"#, data: eight)),
            ("negative_shape", rawFile(#"{"w":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,8]}}"#, data: eight)),
            ("fractional_shape", rawFile(#"{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: eight)),
            ("float_shape", rawFile(#"{"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#, data: eight)),
            ("string_shape", rawFile(#"{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, data: eight)),
            ("shape_overflow", rawFile(#"{"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,8]}}"#, data: eight)),
            ("missing_offsets", rawFile(#"{"w":{"dtype":"F32","shape":[2]}}"#, data: eight)),
            ("entry_not_object", rawFile(#"{"w":[1,2,3]}"#, data: eight)),
            ("metadata_not_strings", rawFile(#"{"__metadata__":{"step":12},"w":\#(entry)}"#, data: eight)),
            ("metadata_is_array", rawFile(#"{"__metadata__":["a"],"w":\#(entry)}"#, data: eight)),
            ("duplicate_key", rawFile(#"{"w":\#(entry),"w":\#(entry)}"#, data: eight)),
            ("unterminated_string", rawFile(#"{"w":{"dtype":"F32"#, data: eight)),
            ("bad_escape", rawFile(#"{"w\q":\#(entry)}"#, data: eight)),
            ("lone_surrogate", rawFile(#"{"w\ud800":\#(entry)}"#, data: eight)),
        ]
        #expect(corpus.count >= 10)

        for (name, bytes) in corpus {
            let path = dir.appendingPathComponent("\(name).safetensors").path
            #expect(FileManager.default.createFile(atPath: path, contents: Data(bytes)))
            do {
                let f = try SafeTensorsFile(path: path)
                Issue.record("\(name): opened without error (keys \(f.keys))")
            } catch let e as SafeTensorsError {
                #expect(e.description.contains("\(name).safetensors"), "\(name): message lacks the file name: \(e)")
                #expect(e.path == path)
            } catch {
                Issue.record("\(name): threw \(type(of: error)) instead of SafeTensorsError: \(error)")
            }
            // Through the generic entry point too.
            #expect(throws: SafeTensorsError.self, "\(name)") { _ = try openWeights(path: path) }
        }

        // Messages say what was expected and what was found, naming the key.
        func message(_ name: String) throws -> String {
            let path = dir.appendingPathComponent("\(name).safetensors").path
            return try #require(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: path) }.description
        }
        let size = try message("size_mismatch")
        #expect(size.contains("'w'") && size.contains("16") && size.contains("8 bytes"), "\(size)")
        let overlap = try message("overlapping_offsets")
        #expect(overlap.contains("'a'") && overlap.contains("'b'") && overlap.contains("overlap"), "\(overlap)")
        let dtype = try message("unknown_dtype")
        #expect(dtype.contains("Q4") && dtype.contains("BF16"), "\(dtype)")
        #expect(try message("header_len_huge").contains("200000000"))
        #expect(try message("empty_file").contains("0 bytes"))

        // A missing file is an error too.
        #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: dir.appendingPathComponent("absent.safetensors").path) }
        #expect(throws: SafeTensorsError.self) { _ = try SafeTensorsFile(path: dir.path) }
    }

    @Test func validEdgeCasesAccepted() throws {
        let dir = try makeTempDir()
        defer { cleanup(dir) }
        func open(_ name: String, _ bytes: [UInt8]) throws -> SafeTensorsFile {
            let path = dir.appendingPathComponent(name).path
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            return try SafeTensorsFile(path: path)
        }
        // No tensors, null metadata, unknown extra fields, escapes in names, gaps between tensors.
        #expect(try open("empty.safetensors", rawFile("{}")).keys.isEmpty)
        #expect(try open("nullmeta.safetensors", rawFile(#"{"__metadata__":null}"#)).metadata.isEmpty)
        let f = try open("extras.safetensors", rawFile(#"{ "a\u00e9\n" : {"dtype":"U8","shape":[2],"data_offsets":[4,6],"extra":[1,{"x":null}]} , "e":{"dtype":"F64","shape":[0,5],"data_offsets":[6,6]} }   "#, data: [9, 9, 9, 9, 1, 2, 9]))
        #expect(f.keys == ["a\u{e9}\n", "e"])
        #expect(try f.tensor("a\u{e9}\n").contiguousBytes() == [1, 2])
        #expect(try f.tensor("e").shape == [0, 5])
    }
}
