// FixtureRegistry.swift — which Swift module answers which reference class. Each entry builds
// the module from the case's config, loads its weights, runs the call the case describes and
// returns every output it produced, keyed `out.<name>` as in io.safetensors.
import Torch

/// How an output is compared: max |a − b| (absolute), that divided by max |expected| (relative),
/// or bit-exact equality.
public enum ToleranceSpec: Sendable, Equatable {
    case absolute(Double)
    case relative(Double)
    case exact
}

public struct FixtureEntry: Sendable {
    /// `module.class` strings of case.json this entry answers.
    public let classNames: [String]
    public let run: @Sendable (FixtureCase) throws -> [String: Tensor]
    /// Per-output tolerance when the case's `tolerance` is not a plain absolute map (training cases).
    public let tolerance: (@Sendable (FixtureCase, String) -> ToleranceSpec?)?

    public init(_ classNames: [String], tolerance: (@Sendable (FixtureCase, String) -> ToleranceSpec?)? = nil,
                run: @escaping @Sendable (FixtureCase) throws -> [String: Tensor]) {
        self.classNames = classNames
        self.run = run
        self.tolerance = tolerance
    }
}

public enum FixtureRegistry {
    /// All entries. Each family keeps its entries in its own file; a new module adds its entry there.
    public static let entries: [FixtureEntry] = diffusersEntries + unetEntries + vaeClipSchedulerEntries + personaliveEntries + trainingEntries + unet3dEntries + streamingEntries

    public static func entry(for moduleClass: String) -> FixtureEntry? {
        entries.first { $0.classNames.contains(moduleClass) }
    }

    public static var knownClasses: [String] { entries.flatMap(\.classNames) }
}
