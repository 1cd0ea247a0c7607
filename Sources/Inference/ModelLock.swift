// ModelLock.swift — one PersonaLiveModel shared by several StreamingPipelines (a server's jobs and
// WebSocket streams, as the reference's webcam server shares one pipeline object across its
// worker): every use of the networks runs under one lock, and the pipeline whose reference
// attention the UNets carry is re-attached before each of its forwards, so streams never read
// each other's reference banks. Chunks of different streams interleave; none runs concurrently.
import Foundation
import Models

public final class ModelLock: @unchecked Sendable {
    public let model: PersonaLiveModel
    private let lock = NSLock()
    /// The control whose hooks the UNets carry now.
    private weak var attached: ReferenceAttentionControl?

    public init(model: PersonaLiveModel) {
        self.model = model
    }

    /// Runs `body` with the model to itself, `control`'s hooks installed when given.
    public func withModel<T>(_ control: ReferenceAttentionControl? = nil, _ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        if let control, attached !== control {
            control.attach()
            attached = control
        }
        return try body()
    }

    /// A control made under the lock (making one installs its hooks).
    func makeControl(_ make: () throws -> ReferenceAttentionControl) rethrows -> ReferenceAttentionControl {
        lock.lock()
        defer { lock.unlock() }
        let control = try make()
        attached = control
        return control
    }

    /// Removes `control`'s hooks if they are the installed ones (another stream's stay).
    func release(_ control: ReferenceAttentionControl) {
        lock.lock()
        defer { lock.unlock() }
        if attached === control {
            control.detach()
            attached = nil
        }
    }
}
