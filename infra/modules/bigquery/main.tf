locals {
  key_column = { name = "key", type = "INTEGER", mode = "REQUIRED", description = "Row key, passed through to predictions." }

  # The same images in two encodings: text as in the original sample, and raw bytes.
  image_tables = {
    input       = { id = var.input_table_id, type = "STRING", layout = "784 comma-separated pixel values in [0, 1]" }
    input_bytes = { id = var.input_bytes_table_id, type = "BYTES", layout = "784 uint8 pixels, row-major 28x28" }
  }

  prediction_columns = concat(
    [
      merge(local.key_column, { description = "Key of the input row." }),
      { name = "class", type = "INTEGER", mode = "REQUIRED", description = "Predicted digit (argmax)." },
      { name = "confidence", type = "FLOAT", mode = "REQUIRED", description = "Softmax probability of the predicted class." },
    ],
    [for d in range(10) : { name = "pred${d}", type = "FLOAT", mode = "NULLABLE", description = "Softmax probability of digit ${d}." }],
  )

  # Same order and modes as the rows `mnistkit stream` writes (pipeline/stream_io.py): streaming
  # inserts into a table whose columns differ fail row by row.
  stream_columns = [
    { name = "event_time", type = "TIMESTAMP", mode = "NULLABLE", description = "Event time the stream gave the row (its source's timestamp)." },
    { name = "prediction_time", type = "TIMESTAMP", mode = "NULLABLE", description = "When the micro-batch holding the row was scored." },
    { name = "latency_ms", type = "FLOAT", mode = "NULLABLE", description = "prediction_time - event_time in milliseconds." },
    { name = "model_version", type = "STRING", mode = "NULLABLE", description = "Model version directory that scored the row." },
  ]

  # Table ids are variables; the keys stay fixed so outputs and addresses do not move.
  tables = merge(
    {
      for k, t in local.image_tables : k => {
        id           = t.id
        description  = "MNIST images to predict: key, then ${t.layout}."
        schema       = [local.key_column, { name = "image", type = t.type, mode = "REQUIRED", description = t.layout }]
        partitioning = null
      }
    },
    {
      predictions = {
        id           = var.predictions_table_id
        description  = "One row per predicted image."
        schema       = local.prediction_columns
        partitioning = null
      }
      # A stream never ends: day partitions on prediction_time keep queries and expiry cheap.
      stream_predictions = {
        id           = var.stream_predictions_table_id
        description  = "One row per image predicted by a stream, with its timing and model version."
        schema       = concat(local.prediction_columns, local.stream_columns)
        partitioning = "prediction_time"
      }
    },
  )
}

# Access is granted per table (iam module), never dataset-wide and never with `access` blocks
# here: those are authoritative and would fight the table grants.
resource "google_bigquery_dataset" "this" {
  #checkov:skip=CKV_GCP_81:CMEK is opt-in through var.kms_key_name; the default is Google-managed encryption.
  project                    = var.project_id
  dataset_id                 = var.dataset_id
  location                   = var.location
  description                = "MNIST inputs and predictions for the mnist-dataflow-kit."
  delete_contents_on_destroy = var.delete_contents_on_destroy
  labels                     = var.labels

  dynamic "default_encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = default_encryption_configuration.value
    }
  }
}

resource "google_bigquery_table" "this" {
  #checkov:skip=CKV_GCP_80:CMEK is opt-in through var.kms_key_name; the default is Google-managed encryption.
  #checkov:skip=CKV_GCP_121:Protection is on (var.deletion_protection defaults to true); the root turns it off only for an explicit FORCE_DESTROY=1 teardown.
  for_each = local.tables

  project             = var.project_id
  dataset_id          = google_bigquery_dataset.this.dataset_id
  table_id            = each.value.id
  description         = each.value.description
  schema              = jsonencode(each.value.schema)
  labels              = var.labels
  deletion_protection = var.deletion_protection

  dynamic "time_partitioning" {
    for_each = each.value.partitioning == null ? [] : [each.value.partitioning]
    content {
      type  = "DAY"
      field = time_partitioning.value
    }
  }

  dynamic "encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_configuration.value
    }
  }
}
