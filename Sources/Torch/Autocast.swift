// Autocast.swift — torch.autocast: inside the region, ops on the device's autocast lists (conv,
// matmul, linear, attention…) run in a lower precision and precision-sensitive ones (norms,
// losses, softmax…) in float32, while parameters keep their dtype (mixed-precision training).
import CTorch

public enum Autocast {
    /// Runs `body` with autocast for `device`'s type set to `dtype` (float16 or bfloat16), or
    /// switched off when `enabled` is false; the previous state comes back afterwards.
    public static func with<R>(device: Device, dtype: DType, enabled: Bool = true,
                               _ body: () throws -> R) throws -> R {
        let (type, _) = device.code
        var prevEnabled: Int32 = 0, prevDtype: Int32 = -1
        try check(tc_autocast_enter(type, enabled ? 1 : 0, dtype.rawValue, &prevEnabled, &prevDtype))
        defer { _ = tc_autocast_exit(type, prevEnabled, prevDtype) }
        return try body()
    }

    public static func isEnabled(_ device: Device) -> Bool {
        var out: Int32 = 0
        _ = tc_autocast_is_enabled(device.code.0, &out)
        return out != 0
    }
}
