// Generator.swift — seeded random generators (torch.Generator) and the global one.
import CTorch

public final class Generator: @unchecked Sendable {
    let handle: OpaquePointer
    /// Where its numbers are made: tensors for other devices drawn from a CPU generator are drawn
    /// on the CPU and copied (diffusers' randn_tensor), so they do not depend on the device.
    public let device: Device

    public init(seed: UInt64, device: Device = .cpu) throws {
        self.device = device
        var out: OpaquePointer?
        let (dt, di) = device.code
        try check(tc_generator_new(seed, dt, di, &out))
        handle = out!
    }
    deinit { tc_generator_free(handle) }

    public func manualSeed(_ seed: UInt64) throws { try check(tc_generator_set_seed(handle, seed)) }

    /// The full generator state as a uint8 tensor (torch.Generator.get_state()).
    public func state() throws -> Tensor { try make { tc_generator_get_state(handle, $0) } }
    public func setState(_ state: Tensor) throws { try check(tc_generator_set_state(handle, state.handle)) }

    /// State of the process-wide CPU generator that draws without an explicit generator use.
    public static func defaultState() throws -> Tensor { try make { tc_default_generator_get_state($0) } }
    public static func setDefaultState(_ state: Tensor) throws { try check(tc_default_generator_set_state(state.handle)) }
}
