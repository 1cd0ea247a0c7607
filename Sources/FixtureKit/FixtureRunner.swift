// FixtureRunner.swift — finds case folders (any folder holding case.json, at any depth), runs
// each through its registry entry and compares every out.* tensor with the reference. A case
// without a registry entry is an ERROR unless it is named in the caller's not-implemented list
// (then NOT IMPLEMENTED, by name); a listed case that is registered, or that is not under the
// root, is an ERROR, so the list shrinks as capabilities land.
import Foundation
import Logging
import Torch

public struct OutputComparison: Sendable {
    public let key: String
    /// max |a − b|, or max |a − b| / max |expected| for relative tolerances.
    public let maxAbsError: Double
    public let tolerance: Double
    public var relative = false
    /// max |expected|, to judge an error in units of the reference's float32 spacing.
    public var referenceScale = 0.0
    public var passed: Bool { maxAbsError <= tolerance }
}

public struct CaseResult: Sendable {
    public enum Status: String, Sendable {
        case pass = "PASS", fail = "FAIL", error = "ERROR"
        /// A case named in the not-implemented list whose module has no registry entry yet.
        case notImplemented = "NOT IMPLEMENTED"
    }
    public let name: String
    public let path: String
    public let moduleClass: String
    public var status: Status
    public var comparisons: [OutputComparison] = []
    public var message: String?

    /// The worst output: largest error relative to its tolerance.
    public var worst: OutputComparison? {
        comparisons.max { ($0.maxAbsError / max($0.tolerance, 1e-30)) < ($1.maxAbsError / max($1.tolerance, 1e-30)) }
    }
}

public struct FixtureRunner {
    public let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    /// Every folder under `root` (or `root` itself) that holds a case.json, sorted by path.
    public static func discover(root: URL) throws -> [URL] {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDir), isDir.boolValue else {
            throw FixtureError("\(root.path): no such folder")
        }
        var found: [URL] = []
        if fm.fileExists(atPath: root.appendingPathComponent("case.json").path) { found.append(root) }
        if let e = fm.enumerator(at: root, includingPropertiesForKeys: nil) {
            for case let url as URL in e where url.lastPathComponent == "case.json" {
                let dir = url.deletingLastPathComponent()
                if dir.standardizedFileURL != root.standardizedFileURL { found.append(dir) }
            }
        }
        return found.sorted { $0.path < $1.path }
    }

    /// Runs every case under `root` (or the one named `caseName`). `notImplemented`: case folder
    /// names whose capability is not built yet; each must be under the root (when no `caseName`
    /// is given) and unregistered, and is then reported NOT IMPLEMENTED instead of ERROR.
    public func run(root: URL, caseName: String? = nil, notImplemented: Set<String> = []) throws -> [CaseResult] {
        var dirs = try Self.discover(root: root)
        if let caseName {
            dirs = dirs.filter { $0.lastPathComponent == caseName }
            if dirs.isEmpty { throw FixtureError("no case named '\(caseName)' under \(root.path)") }
        }
        if dirs.isEmpty { throw FixtureError("no case folders (with case.json) under \(root.path)") }
        var results = dirs.map { run(directory: $0, notImplemented: notImplemented) }
        if caseName == nil {
            let found = Set(dirs.map(\.lastPathComponent))
            for name in notImplemented.subtracting(found).sorted() {
                results.append(CaseResult(name: name, path: root.appendingPathComponent(name).path, moduleClass: "<none>",
                                          status: .error, message: "listed as not implemented, but no case folder '\(name)' is under \(root.path)"))
            }
        }
        return results
    }

    public func run(directory: URL, notImplemented: Set<String> = []) -> CaseResult {
        var result = CaseResult(name: directory.lastPathComponent, path: directory.path, moduleClass: "<unreadable>",
                                status: .error)
        do {
            let c = try FixtureCase(directory: directory)
            result = CaseResult(name: c.name, path: directory.path, moduleClass: c.moduleClass, status: .error)
            guard let entry = FixtureRegistry.entry(for: c.moduleClass) else {
                if notImplemented.contains(c.name) {
                    result.status = .notImplemented
                    result.message = "not implemented yet (listed): no fixture entry for '\(c.moduleClass.prefix(80))'"
                } else {
                    result.message = "unknown module '\(c.moduleClass)' (no fixture entry registered for it)"
                }
                return result
            }
            if notImplemented.contains(c.name) {
                result.message = "listed as not implemented, but an entry is registered for it: remove it from the list"
                return result
            }
            guard !c.outputKeys.isEmpty else {
                throw FixtureError("\(c.name): io.safetensors holds no out.* tensors, so nothing can be compared")
            }
            logger.debug("running \(c.name) (\(c.moduleClass))")
            let produced = try Torch.noGrad { try entry.run(c) }
            var missing: [String] = []
            for key in c.outputKeys {
                guard let got = produced[key] else { missing.append(key); continue }
                let want = try c.expected(key)
                guard got.shape == want.shape else {
                    throw FixtureError("\(key): produced shape \(got.shape), reference \(want.shape)")
                }
                let spec = entry.tolerance?(c, key) ?? .absolute(c.tolerance(for: key))
                var err = want.numel == 0 ? 0 : try got.maxAbsDiff(want)
                var tol = 0.0, relative = false
                let scale = want.numel == 0 ? 0 : try want.to(.float64).abs().amax().item()
                switch spec {
                case .absolute(let t): tol = t
                case .exact: tol = 0
                case .relative(let t):
                    tol = t
                    relative = true
                    // An all-zero reference (a dropped branch's gradient) must be matched exactly.
                    err = scale > 0 ? err / scale : err
                }
                result.comparisons.append(OutputComparison(key: key, maxAbsError: err.isNaN ? .infinity : err,
                                                           tolerance: tol, relative: relative, referenceScale: scale))
            }
            if !missing.isEmpty {
                result.status = .fail
                result.message = "outputs not produced: \(missing.joined(separator: ", "))"
            } else {
                result.status = result.comparisons.allSatisfy(\.passed) ? .pass : .fail
                if result.status == .fail {
                    result.message = result.comparisons.filter { !$0.passed }.map {
                        "\($0.key) err \(format($0.maxAbsError)) > tol \(format($0.tolerance))"
                    }.joined(separator: "; ")
                }
            }
        } catch {
            result.status = .error
            result.message = "\(error)"
        }
        return result
    }
}

public func format(_ x: Double) -> String {
    x == 0 ? "0" : String(format: "%.3g", x)
}
