// FixturesCommand.swift — `personalive fixtures check DIR [--case NAME] [--not-implemented NAME,...]`.
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

        @Option(help: ArgumentHelp(
            "Case folders whose capability is not built yet (comma-separated, repeatable): reported NOT IMPLEMENTED instead of ERROR.",
            discussion: "Each must be under DIR and have no registered entry; otherwise it is an ERROR, so the list shrinks as cases land."))
        var notImplemented: [String] = []

        @Flag(help: "Print every output's error, not only the worst.")
        var verbose = false

        @OptionGroup var global: GlobalOptions

        func run() throws {
            let logger = try global.setUp(label: "fixtures")
            let listed = Set(notImplemented.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty })
            let results = try FixtureRunner(logger: logger).run(root: URL(fileURLWithPath: directory), caseName: caseName,
                                                                notImplemented: listed)
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
            let missing = results.filter { $0.status == .notImplemented }
            let bad = results.filter { $0.status != .pass && $0.status != .notImplemented }
            print("\(results.count - bad.count - missing.count) passed, \(bad.count) failed"
                  + (missing.isEmpty ? "" : ", \(missing.count) not implemented (\(missing.map(\.name).joined(separator: ", ")))"))
            if !bad.isEmpty { throw ExitCode(1) }
        }
    }
}
