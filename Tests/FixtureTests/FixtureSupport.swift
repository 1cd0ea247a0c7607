// FixtureSupport.swift — where the tests find the shared fixtures, and the key manifests
// (`manifests/*.json`) that full-size modules' state dicts are checked against.
import Foundation
import Testing
import NN
import Torch

enum TestPaths {
    /// The package root, from this file's location (Tests/FixtureTests/FixtureSupport.swift).
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// $PERSONALIVE_FIXTURES, else ../shared/fixtures beside the package.
    static var fixtures: URL {
        if let env = ProcessInfo.processInfo.environment["PERSONALIVE_FIXTURES"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
    }

    /// $PERSONALIVE_PYTHON, else .venv/bin/python in the package; a missing one fails the calling
    /// test (`make test` always installs it), so no check passes having checked nothing.
    static func requirePython(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let python = ProcessInfo.processInfo.environment["PERSONALIVE_PYTHON"]
            ?? packageRoot.appendingPathComponent(".venv/bin/python").path
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "no Python at \(python): set PERSONALIVE_PYTHON or run `make venv`", sourceLocation: sourceLocation)
        return python
    }

    /// Runs a program to its end: its exit status and its stdout and stderr together.
    static func run(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws
        -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        if let environment { p.environment = environment }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    /// The `personalive` binary built beside this test bundle (same scratch path and LibTorch).
    static var personaliveBinary: URL? {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("personalive")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = packageRoot.appendingPathComponent(".build/debug/personalive")
        return FileManager.default.isExecutableFile(atPath: fallback.path) ? fallback : nil
    }
}

// MARK: key manifests

/// One row of a manifest's key list: a state-dict key, its shape and, where the row lists one, its dtype.
struct ManifestEntry: Equatable, CustomStringConvertible {
    let key: String
    let shape: [Int]
    var dtype: String? = nil

    var numel: Int { shape.reduce(1, *) }
    var description: String { "\(key) \(shape)" + (dtype.map { " \($0)" } ?? "") }
}

/// A JSON key manifest under `manifests/` of the fixtures root: the state-dict entries in PyTorch's
/// order, plus integer fields (`num_keys`, `total_param_count`, …) and configs read on demand.
struct Manifest {
    let file: String
    let json: [String: Any]
    let entries: [ManifestEntry]

    /// `listKey` names the entry list: `keys` in PersonaLive's manifests, `state_dict` in the
    /// diffusers / transformers ones. Rows are `[key, shape]` or `[key, shape, dtype]`.
    init(_ file: String, listKey: String = "keys") throws {
        self.file = file
        let url = TestPaths.fixtures.appendingPathComponent("manifests/\(file)")
        json = try #require(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let rows = try #require(json[listKey] as? [[Any]], "\(file) has no \(listKey) list")
        entries = try rows.enumerated().map { i, row in
            let key = try #require(row.first as? String, "\(file): row \(i) has no key")
            let shape = try #require(row.count > 1 ? row[1] as? [Int] : nil, "\(file): \(key) has no shape")
            let dtype = row.count > 2 ? try #require(row[2] as? String, "\(file): \(key) dtype is not a string") : nil
            return ManifestEntry(key: key, shape: shape, dtype: dtype)
        }
    }

    /// An integer field; its absence is a recorded issue (and a thrown error).
    func int(_ field: String) throws -> Int {
        try #require(json[field] as? Int, "\(file) has no integer \(field)")
    }

    /// The JSON object `field` (`config`, `constructor_config`, …) decoded as `T`.
    func config<T: Decodable>(_ type: T.Type = T.self, field: String = "config") throws -> T {
        let object = try #require(json[field], "\(file) has no \(field)")
        return try JSONDecoder().decode(T.self, from: JSONSerialization.data(withJSONObject: object))
    }

    /// The entries whose key contains `fragment`, in manifest order.
    func entries(containing fragment: String) -> [ManifestEntry] {
        entries.filter { $0.key.contains(fragment) }
    }

    /// `module`'s state dict against all of this manifest's entries.
    func compare(_ module: Module, dtypes: Bool = false) -> ManifestComparison {
        ManifestComparison(module.stateDict(), with: entries, dtypes: dtypes)
    }

    /// Records an issue for every way `module`'s state dict differs from this manifest's entries.
    func expectMatch(_ module: Module, dtypes: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) {
        compare(module, dtypes: dtypes).expectMatch(file, sourceLocation: sourceLocation)
    }

    /// `module`'s key count, state-dict element total and parameter total against the integer
    /// fields so named (nil: not checked). The defaults are PersonaLive's field names.
    func expectTotals(of module: Module, numKeys: String? = "num_keys",
                      stateDictElements: String? = "total_state_dict_elements",
                      parameters: String? = "total_param_count",
                      sourceLocation: SourceLocation = #_sourceLocation) throws {
        let state = module.stateDict()
        if let numKeys {
            let want = try int(numKeys)
            #expect(state.count == want, "\(file): \(state.count) keys, \(numKeys) \(want)", sourceLocation: sourceLocation)
        }
        if let stateDictElements {
            let want = try int(stateDictElements), got = state.reduce(0) { $0 + $1.1.numel }
            #expect(got == want, "\(file): \(got) state-dict elements, \(stateDictElements) \(want)",
                    sourceLocation: sourceLocation)
        }
        if let parameters {
            let want = try int(parameters)
            #expect(module.parameterCount == want, "\(file): \(module.parameterCount) parameters, \(parameters) \(want)",
                    sourceLocation: sourceLocation)
        }
    }
}

/// Every difference between a state dict (ours) and a manifest's entries (wanted): keys only one side
/// has, shapes (and optionally dtypes) that differ, registration order, count and element total.
struct ManifestComparison {
    /// Manifest keys the module lacks, in manifest order.
    let missing: [String]
    /// Module keys the manifest lacks, in module order.
    let unexpected: [String]
    /// `key: ours vs manifest` for each shared key whose shape (or, when compared, dtype) differs.
    let mismatched: [String]
    /// The first position where the two key sequences differ, nil when they are the same sequence.
    let firstOrderDifference: Int?
    let count: Int, expectedCount: Int
    let elements: Int, expectedElements: Int

    var matches: Bool {
        missing.isEmpty && unexpected.isEmpty && mismatched.isEmpty && firstOrderDifference == nil
            && count == expectedCount && elements == expectedElements
    }

    /// `dtypes`: also compare dtypes, which every wanted entry must then list.
    init(_ ours: [ManifestEntry], with want: [ManifestEntry], dtypes: Bool = false) {
        let wanted = Dictionary(want.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let have = Set(ours.map(\.key))
        missing = want.map(\.key).filter { !have.contains($0) }
        unexpected = ours.map(\.key).filter { wanted[$0] == nil }
        mismatched = ours.compactMap { own in
            guard let w = wanted[own.key] else { return nil }
            if own.shape != w.shape { return "\(own.key): shape \(own.shape) vs manifest \(w.shape)" }
            if dtypes, own.dtype == nil || own.dtype != w.dtype {
                return "\(own.key): dtype \(own.dtype ?? "?") vs manifest \(w.dtype ?? "none listed")"
            }
            return nil
        }
        let ourKeys = ours.map(\.key), wantKeys = want.map(\.key)
        firstOrderDifference = ourKeys == wantKeys
            ? nil : ourKeys.indices.first { $0 >= wantKeys.count || ourKeys[$0] != wantKeys[$0] } ?? ourKeys.count
        count = ours.count
        expectedCount = want.count
        elements = ours.reduce(0) { $0 + $1.numel }
        expectedElements = want.reduce(0) { $0 + $1.numel }
    }

    init(_ stateDict: [(String, Tensor)], with want: [ManifestEntry], dtypes: Bool = false) {
        self.init(stateDict.map { ManifestEntry(key: $0.0, shape: $0.1.shape, dtype: $0.1.dtype.description) },
                  with: want, dtypes: dtypes)
    }

    init(_ shapes: [(String, [Int])], with want: [ManifestEntry]) {
        self.init(shapes.map { ManifestEntry(key: $0.0, shape: $0.1) }, with: want)
    }

    /// Records one issue per kind of difference, each listing every key concerned.
    func expectMatch(_ label: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(count == expectedCount, "\(label): \(count) keys, manifest \(expectedCount)", sourceLocation: sourceLocation)
        #expect(unexpected.isEmpty, "\(label): keys the manifest lacks: \(unexpected)", sourceLocation: sourceLocation)
        #expect(missing.isEmpty, "\(label): manifest keys the module lacks: \(missing)", sourceLocation: sourceLocation)
        #expect(mismatched.isEmpty, "\(label): mismatches: \(mismatched)", sourceLocation: sourceLocation)
        #expect(firstOrderDifference == nil, "\(label): registration order differs from key #\(firstOrderDifference ?? 0)",
                sourceLocation: sourceLocation)
        #expect(elements == expectedElements, "\(label): \(elements) elements, manifest \(expectedElements)",
                sourceLocation: sourceLocation)
    }
}
