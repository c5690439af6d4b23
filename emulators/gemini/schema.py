"""Values that satisfy a response schema (OpenAPI subset or JSON Schema): ``$ref``, ``anyOf``,
``allOf``, enums, bounds, lengths, formats. It knows nothing of the product; `answers` tells it
better values for the property names the product's schemas use."""

from __future__ import annotations

from typing import Any

from emulators.gemini.wire import pick

MAX_SCHEMA_DEPTH = 12
MISSING = object()


class SchemaFiller:
    """Build a value satisfying a response schema, in OpenAPI-subset or JSON-Schema form.

    A subclass knows better values for some property names (`special_values`)."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    # --- schema helpers -------------------------------------------------------------------

    def resolve(self, schema: Any, depth: int = 0) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or depth > MAX_SCHEMA_DEPTH:
            return schema
        target: Any = self.root
        for token in ref.lstrip("#").strip("/").split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            target = target.get(token) if isinstance(target, dict) else None
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return self.resolve({**(target if isinstance(target, dict) else {}), **siblings}, depth + 1)

    def variants(self, schema: dict[str, Any]) -> list[dict[str, Any]]:
        options = pick(schema, "anyOf", "any_of", "oneOf", "one_of")
        if not isinstance(options, list):
            return []
        return [self.resolve(option) for option in options]

    def merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        parts = pick(schema, "allOf", "all_of")
        if not isinstance(parts, list):
            return schema
        result = {k: v for k, v in schema.items() if k not in ("allOf", "all_of")}
        for part in map(self.resolve, parts):
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    result["properties"] = {**result.get("properties", {}), **value}
                elif key == "required" and isinstance(value, list):
                    result["required"] = [*result.get("required", []), *value]
                else:
                    result.setdefault(key, value)
        return result

    @staticmethod
    def types(schema: dict[str, Any]) -> tuple[list[str], bool]:
        raw = schema.get("type")
        names = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
        lowered = [str(name).lower() for name in names]
        nullable = schema.get("nullable") is True or "null" in lowered
        concrete = [name for name in lowered if name not in ("null", "type_unspecified")]
        if not concrete:
            if isinstance(schema.get("properties"), dict):
                concrete = ["object"]
            elif "items" in schema:
                concrete = ["array"]
        return concrete, nullable

    def is_nullable(self, schema: dict[str, Any]) -> bool:
        schema = self.merged(self.resolve(schema))
        _, nullable = self.types(schema)
        return nullable or any(self.is_nullable(v) for v in self.variants(schema))

    def conforms(self, value: Any, schema: Any, depth: int = 0) -> bool:
        schema = self.merged(self.resolve(schema))
        if depth > MAX_SCHEMA_DEPTH:
            return True
        variants = self.variants(schema)
        if variants and not any(self.conforms(value, v, depth + 1) for v in variants):
            return False
        enum = schema.get("enum")
        if isinstance(enum, list) and value not in enum:
            return False
        names, nullable = self.types(schema)
        if not names:
            return True  # untyped, or already checked against its anyOf variants
        if value is None:
            return nullable
        if isinstance(value, bool):
            ok = "boolean" in names
        elif isinstance(value, int):
            ok = "integer" in names or "number" in names
        elif isinstance(value, float):
            ok = "number" in names
        elif isinstance(value, str):
            ok = "string" in names
        elif isinstance(value, list):
            ok = "array" in names
        elif isinstance(value, dict):
            required = schema.get("required") or []
            ok = "object" in names and all(key in value for key in required)
        else:
            ok = False
        if ok and isinstance(value, (int, float)) and not isinstance(value, bool):
            low, high = self.bounds(schema)
            ok = (low is None or value >= low) and (high is None or value <= high)
        return ok

    @staticmethod
    def bounds(schema: dict[str, Any]) -> tuple[float | None, float | None]:
        def number(*keys: str) -> float | None:
            value = pick(schema, *keys)
            try:
                return float(value) if value is not None and not isinstance(value, bool) else None
            except (TypeError, ValueError):
                return None

        low = number("minimum")
        high = number("maximum")
        exclusive_low = number("exclusiveMinimum", "exclusive_minimum")
        exclusive_high = number("exclusiveMaximum", "exclusive_maximum")
        if exclusive_low is not None:
            low = max(low if low is not None else exclusive_low, exclusive_low)
        if exclusive_high is not None:
            high = min(high if high is not None else exclusive_high, exclusive_high)
        return low, high

    # --- generic filling -----------------------------------------------------------------

    def fill(self, schema: Any, overrides: dict[str, Any] | None = None, depth: int = 0) -> Any:
        schema = self.merged(self.resolve(schema))
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[0]
        names, nullable = self.types(schema)
        if not names:
            variants = self.variants(schema)
            concrete = [v for v in variants if self.types(v)[0] or self.variants(v) or "enum" in v]
            if concrete:
                return self.fill(concrete[0], overrides, depth + 1)
            return None if nullable or variants else "ок"
        if depth > MAX_SCHEMA_DEPTH:
            return None if nullable else self.scalar(names[0], schema)
        kind = names[0]
        if kind == "object":
            return self.fill_object(schema, overrides or {}, depth)
        if kind == "array":
            count = pick(schema, "minItems", "min_items")
            try:
                size = max(int(count), 0) if count is not None else 0
            except (TypeError, ValueError):
                size = 0
            return [self.fill(schema.get("items", {}), None, depth + 1) for _ in range(size)]
        return self.scalar(kind, schema)

    def scalar(self, kind: str, schema: dict[str, Any]) -> Any:
        low, high = self.bounds(schema)
        if kind in ("integer", "number"):
            value: float = 1 if kind == "integer" else 0.5
            if low is not None and value < low:
                value = low
            if high is not None and value > high:
                value = high
            return int(value) if kind == "integer" else float(value)
        if kind == "boolean":
            return True
        if kind == "string":
            formatted = {
                "date-time": "2025-01-01T10:00:00Z",
                "date": "2025-01-01",
                "time": "10:00:00",
                "email": "client@example.com",
                "uri": "https://example.com",
                "uuid": "00000000-0000-4000-8000-000000000000",
            }.get(str(schema.get("format", "")))
            if formatted:
                return formatted
            text = "ок"
            min_length = pick(schema, "minLength", "min_length")
            max_length = pick(schema, "maxLength", "max_length")
            if isinstance(min_length, (int, str)) and str(min_length).isdigit():
                text = (text * int(min_length))[: max(int(min_length), len(text))]
            if isinstance(max_length, (int, str)) and str(max_length).isdigit():
                text = text[: int(max_length)]
            return text
        return None

    def fill_object(self, schema: dict[str, Any], overrides: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return dict(overrides)
        ordering = pick(schema, "propertyOrdering", "property_ordering")
        names = [n for n in ordering if n in properties] if isinstance(ordering, list) else []
        names += [n for n in properties if n not in names]
        required = schema.get("required")
        wanted = set(required) if isinstance(required, list) else set(properties)
        special = self.special_values(properties)
        wanted |= set(special) | set(overrides)
        result: dict[str, Any] = {}
        for name in names:
            if name not in wanted:
                continue
            prop_schema = properties[name]
            if name in overrides:
                result[name] = overrides[name]
                continue
            candidates = special.get(name, [])
            chosen = next((c for c in candidates if self.conforms(c, prop_schema)), MISSING)
            result[name] = self.fill(prop_schema, None, depth + 1) if chosen is MISSING else chosen
        return result

    def special_values(self, properties: dict[str, Any]) -> dict[str, list[Any]]:
        """Candidate values for some property names, tried in order before generic filling."""
        return {}
