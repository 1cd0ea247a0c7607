// OpenAPIDocument.swift — `GET /openapi.json`: the HTTP API in OpenAPI 3.1 (what FastAPI serves at
// the same path for the reference's server), written by hand next to the routes in Server.swift.
enum OpenAPIDocument {
    static let json = #"""
{
  "openapi": "3.1.0",
  "info": {"title": "PersonaLive", "version": "1.0.0",
           "description": "Portrait animation: offline jobs over HTTP and live streaming over a WebSocket (GET /v1/stream: send the reference portrait as a binary message, then JPEG frames; receive generated JPEG frames and {\"type\":\"stats\"} text messages)."},
  "paths": {
    "/v1/animations": {
      "post": {
        "summary": "Queue an animation job",
        "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {
          "type": "object", "required": ["reference"],
          "properties": {
            "reference": {"type": "string", "format": "binary", "description": "the portrait, PNG or JPEG"},
            "driving": {"type": "string", "format": "binary", "description": "a driving video (exactly one of driving and pose)"},
            "pose": {"type": "string", "format": "binary", "description": "pose JSON as written by `personalive pose extract`"},
            "motion": {"type": "string", "format": "binary", "description": "motion tokens (safetensors, with pose only)"}
          }}}}},
        "responses": {
          "202": {"description": "queued", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Created"}}}},
          "400": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "415": {"$ref": "#/components/responses/Error"},
          "422": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/v1/animations/{id}": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {
        "summary": "A job's status",
        "responses": {
          "200": {"description": "the job", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
          "404": {"$ref": "#/components/responses/Error"}
        }
      },
      "delete": {
        "summary": "Forget a job and remove its files",
        "responses": {"204": {"description": "deleted"}, "404": {"$ref": "#/components/responses/Error"},
                      "409": {"$ref": "#/components/responses/Error"}}
      }
    },
    "/v1/animations/{id}/video": {
      "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
      "get": {
        "summary": "The generated video of a done job",
        "responses": {
          "200": {"description": "the video", "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}}},
          "404": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/healthz": {"get": {"summary": "Liveness, queued and running jobs, open streams",
                         "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}}}}
  },
  "components": {
    "schemas": {
      "Created": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
      "Job": {"type": "object", "required": ["id", "status", "progress", "frames"], "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "progress": {"type": "number", "minimum": 0, "maximum": 1},
        "frames": {"type": "integer"},
        "error": {"type": ["string", "null"]},
        "seconds": {"type": ["number", "null"]}
      }},
      "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    },
    "responses": {
      "Error": {"description": "what was wrong", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    }
  }
}
"""#
}
