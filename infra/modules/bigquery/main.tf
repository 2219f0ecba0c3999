locals {
  # Table ids are variables; the keys stay fixed so outputs and addresses do not move.
  tables = {
    input = {
      id          = var.input_table_id
      description = "MNIST images as text, the original sample's layout: key, then 784 comma-separated floats in [0, 1]."
      schema = [
        { name = "key", type = "INTEGER", mode = "REQUIRED", description = "Row key, passed through to predictions." },
        { name = "image", type = "STRING", mode = "REQUIRED", description = "784 comma-separated pixel values in [0, 1]." },
      ]
    }
    input_bytes = {
      id          = var.input_bytes_table_id
      description = "MNIST images as raw bytes."
      schema = [
        { name = "key", type = "INTEGER", mode = "REQUIRED", description = "Row key, passed through to predictions." },
        { name = "image", type = "BYTES", mode = "REQUIRED", description = "784 uint8 pixels, row-major 28x28." },
      ]
    }
    predictions = {
      id          = var.predictions_table_id
      description = "One row per predicted image."
      schema = concat(
        [
          { name = "key", type = "INTEGER", mode = "REQUIRED", description = "Key of the input row." },
          { name = "class", type = "INTEGER", mode = "REQUIRED", description = "Predicted digit (argmax)." },
          { name = "confidence", type = "FLOAT", mode = "REQUIRED", description = "Softmax probability of the predicted class." },
        ],
        [for d in range(10) : { name = "pred${d}", type = "FLOAT", mode = "NULLABLE", description = "Softmax probability of digit ${d}." }],
      )
    }
  }
}

# Access is granted with dataset IAM members (iam module), never `access` blocks here:
# the two fight over the same policy.
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

  dynamic "encryption_configuration" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      kms_key_name = encryption_configuration.value
    }
  }
}
