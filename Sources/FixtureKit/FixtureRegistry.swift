// FixtureRegistry.swift — which Swift module answers which reference class. Each entry builds
// the module from the case's config, loads its weights, runs the call the case describes and
// returns every output it produced, keyed `out.<name>` as in io.safetensors.
import Torch

public struct FixtureEntry: Sendable {
    /// `module.class` strings of case.json this entry answers.
    public let classNames: [String]
    public let run: @Sendable (FixtureCase) throws -> [String: Tensor]

    public init(_ classNames: [String], run: @escaping @Sendable (FixtureCase) throws -> [String: Tensor]) {
        self.classNames = classNames
        self.run = run
    }
}

public enum FixtureRegistry {
    /// All entries. Each family keeps its entries in its own file; a new module adds its entry there.
    public static let entries: [FixtureEntry] = diffusersEntries + unetEntries + vaeClipSchedulerEntries + personaliveEntries

    public static func entry(for moduleClass: String) -> FixtureEntry? {
        entries.first { $0.classNames.contains(moduleClass) }
    }

    public static var knownClasses: [String] { entries.flatMap(\.classNames) }
}
