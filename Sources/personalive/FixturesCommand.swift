// FixturesCommand.swift — `personalive fixtures check DIR [--case NAME]`.
import ArgumentParser
import FixtureKit
import Foundation

struct FixturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fixtures", abstract: "Golden-tensor parity checks against the PyTorch reference.",
        subcommands: [Check.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run every case folder (holding case.json) under DIR and compare with the reference.")

        @Argument(help: "A fixtures folder (searched at any depth) or one case folder.")
        var directory: String

        @Option(name: .customLong("case"), help: "Run only the case folder with this name.")
        var caseName: String?

        @Flag(help: "Print every output's error, not only the worst.")
        var verbose = false

        @OptionGroup var global: GlobalOptions

        func run() throws {
            let logger = try global.setUp(label: "fixtures")
            let results = try FixtureRunner(logger: logger).run(root: URL(fileURLWithPath: directory), caseName: caseName)
            let width = max(24, (results.map(\.name.count).max() ?? 0) + 2)
            print("case".padding(toLength: width, withPad: " ", startingAt: 0) + "max abs err  tolerance  result")
            for r in results {
                let worst = r.worst
                let err = worst.map { format($0.maxAbsError) } ?? "-"
                let tol = worst.map { format($0.tolerance) } ?? "-"
                print(r.name.padding(toLength: width, withPad: " ", startingAt: 0)
                      + err.padding(toLength: 13, withPad: " ", startingAt: 0)
                      + tol.padding(toLength: 11, withPad: " ", startingAt: 0) + r.status.rawValue)
                if verbose {
                    for c in r.comparisons {
                        print("    \(c.key): \(format(c.maxAbsError)) (\(c.relative ? "relative " : "")tol \(format(c.tolerance)))\(c.passed ? "" : "  FAIL")")
                    }
                }
                if let m = r.message, r.status != .pass { print("    \(m)") }
            }
            let bad = results.filter { $0.status != .pass }
            print("\(results.count - bad.count) passed, \(bad.count) failed")
            if !bad.isEmpty { throw ExitCode(1) }
        }
    }
}
