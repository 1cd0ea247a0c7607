// FixtureSupport.swift — where the tests find the shared fixtures.
import Foundation

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
