// YAMLText.swift — writing configs back as YAML (the resolved config saved with every run).
import Yams

public enum YAMLText {
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        try YAMLEncoder().encode(value)
    }
}
