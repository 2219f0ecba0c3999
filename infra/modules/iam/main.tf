resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = var.worker_account_id
  display_name = "mnist-dataflow-kit Dataflow worker"
  description  = "Runs Dataflow workers of the mnist-dataflow-kit; no keys, access granted per resource."
}

resource "google_service_account" "training" {
  project      = var.project_id
  account_id   = var.training_account_id
  display_name = "mnist-dataflow-kit training and model publisher"
  description  = "Runs training (Vertex AI custom jobs) and is the one service account that writes the model bucket."
}

resource "google_service_account" "serving" {
  project      = var.project_id
  account_id   = var.serving_account_id
  display_name = "mnist-dataflow-kit online prediction"
  description  = "Runs the model deployed to the kit's Vertex AI endpoint: reads the model bucket, nothing else."
}

# Vertex AI has no per-endpoint IAM in the google provider (google_vertex_ai_endpoint_iam_* are
# google-beta only, on the v1beta1 API), so calling the endpoint is granted on the project, with
# a role that can do nothing but that: no predefined role is narrower than aiplatform.user,
# which also creates jobs, models and endpoints.
resource "google_project_iam_custom_role" "endpoint_invoker" {
  project     = var.project_id
  role_id     = var.endpoint_invoker_role_id
  title       = "mnist-dataflow-kit endpoint invoker"
  description = "Online predictions from the project's Vertex AI endpoints; nothing else."
  permissions = ["aiplatform.endpoints.predict"]
}

resource "google_service_account" "cloudbuild" {
  project      = var.project_id
  account_id   = var.cloudbuild_account_id
  display_name = "mnist-dataflow-kit image builder"
  description  = "Cloud Build runs the worker image build as this account instead of the default Cloud Build account."
}

data "google_project" "this" {
  project_id = var.project_id
}

# Depends on variables only (tests/infra evaluates this block with `terraform console` and
# through the root module's wiring): every grant the kit makes, by identity and resource.
locals {
  # Project-wide grants exist only where no narrower scope does: Dataflow jobs, BigQuery jobs and
  # read sessions, Cloud Build builds and log writing are project resources.
  project_roles = {
    worker = concat(
      ["roles/dataflow.worker", "roles/bigquery.jobUser"],
      # ReadFromBigQuery(method=DIRECT_READ) creates read sessions (bigquery.readsessions.create
      # on the project); with EXPORT, jobUser plus dataViewer on the input tables are enough.
      var.bigquery_direct_read ? ["roles/bigquery.readSessionUser"] : [],
    )
    # Vertex AI custom jobs and Cloud Build write their logs as the job's own account.
    training   = ["roles/logging.logWriter"]
    cloudbuild = ["roles/logging.logWriter"]
    # aiplatform.user: create and follow Vertex AI custom jobs (`mnistkit train --vertex`).
    launcher = ["roles/dataflow.developer", "roles/bigquery.jobUser", "roles/cloudbuild.builds.editor", "roles/aiplatform.user"]
  }

  # google_project_iam_custom_role.endpoint_invoker, by name (this block reads variables only).
  endpoint_invoker_role = "projects/${var.project_id}/roles/${var.endpoint_invoker_role_id}"

  # Resource names by scope; grants name them by these fixed keys so that adding a member or
  # renaming a bucket never re-keys the other bindings.
  targets = {
    project         = { project = var.project_id }
    bucket          = var.buckets
    table           = var.tables
    repository      = { images = var.artifact_registry.repository }
    topic           = { input = var.pubsub.input_topic, dead_letter = var.pubsub.dead_letter_topic }
    subscription    = { input = var.pubsub.input_subscription, dead_letter = var.pubsub.dead_letter_subscription }
    service_account = { worker = "worker", cloudbuild = "cloudbuild", training = "training", serving = "serving" }
  }

  # What each launcher_members entry gets: [scope, target key, role, condition key or null].
  launcher_grants = concat(
    [for r in local.project_roles.launcher : ["project", "project", r, null]],
    [
      ["service_account", "worker", "roles/iam.serviceAccountUser", null],
      ["service_account", "cloudbuild", "roles/iam.serviceAccountUser", null],
      # Vertex AI custom jobs run as the training account (it alone writes the model bucket).
      ["service_account", "training", "roles/iam.serviceAccountUser", null],
      # `mnistkit endpoint deploy` runs the model as the serving account.
      ["service_account", "serving", "roles/iam.serviceAccountUser", null],
      # Upload inputs, stage code and build contexts, read and clean up results.
      ["bucket", "data", "roles/storage.objectUser", null],
      ["bucket", "dataflow", "roles/storage.objectUser", null],
      ["bucket", "models", "roles/storage.objectViewer", null],
      # `mnistkit stage` loads the input tables; results are read only.
      ["table", "input", "roles/bigquery.dataEditor", null],
      ["table", "input_bytes", "roles/bigquery.dataEditor", null],
      ["table", "predictions", "roles/bigquery.dataViewer", null],
      ["table", "stream_predictions", "roles/bigquery.dataViewer", null],
      ["repository", "images", "roles/artifactregistry.reader", null],
      # Feed the stream (mnistkit simulate-stream) and inspect what was dead-lettered.
      ["topic", "input", "roles/pubsub.publisher", null],
      ["subscription", "dead_letter", "roles/pubsub.subscriber", null],
    ],
  )

  # [who, scope, target key, role, condition key or null]. `who` is a service account key
  # (worker, training, cloudbuild, serving, pubsub_service_agent) or a member string from the variables.
  grant_rows = concat(
    [for r in local.project_roles.worker : ["worker", "project", "project", r, null]],
    [for r in local.project_roles.training : ["training", "project", "project", r, null]],
    [for r in local.project_roles.cloudbuild : ["cloudbuild", "project", "project", r, null]],
    [
      # Workers read inputs, models and staged code, and write only under outputs/ and tmp/:
      # a job cannot rewrite its inputs, the models or another job's staged files.
      ["worker", "bucket", "models", "roles/storage.objectViewer", null],
      ["worker", "bucket", "data", "roles/storage.objectViewer", null],
      ["worker", "bucket", "data", "roles/storage.objectUser", "outputs"],
      ["worker", "bucket", "dataflow", "roles/storage.objectViewer", null],
      ["worker", "bucket", "dataflow", "roles/storage.objectUser", "temp"],
      ["worker", "table", "input", "roles/bigquery.dataViewer", null],
      ["worker", "table", "input_bytes", "roles/bigquery.dataViewer", null],
      ["worker", "table", "predictions", "roles/bigquery.dataEditor", null],
      ["worker", "table", "stream_predictions", "roles/bigquery.dataEditor", null],
      ["worker", "repository", "images", "roles/artifactregistry.reader", null],
      ["worker", "subscription", "input", "roles/pubsub.subscriber", null],
      # Streams load the newest model version by themselves, so writing the model bucket is
      # running code on the workers: only the training account and the publishers may.
      ["training", "bucket", "data", "roles/storage.objectViewer", null],
      ["training", "bucket", "models", "roles/storage.objectUser", null],
      # The deployed model reads its export (and newer versions: serve reloads by itself).
      ["serving", "bucket", "models", "roles/storage.objectViewer", null],
      # `predict --endpoint vertex://... --runner dataflow`: the workers call the endpoint.
      ["worker", "project", "project", local.endpoint_invoker_role, null],
      # The builder reads the uploaded build context and pushes to the one repository.
      ["cloudbuild", "bucket", "dataflow", "roles/storage.objectViewer", "build_source"],
      ["cloudbuild", "repository", "images", "roles/artifactregistry.writer", null],
      # Dead-lettering: Pub/Sub's own agent pulls the undeliverable message and republishes it.
      ["pubsub_service_agent", "subscription", "input", "roles/pubsub.subscriber", null],
      ["pubsub_service_agent", "topic", "dead_letter", "roles/pubsub.publisher", null],
    ],
    [for m in var.model_publisher_members : [m, "bucket", "models", "roles/storage.objectUser", null]],
    [for m in var.image_pusher_members : [m, "repository", "images", "roles/artifactregistry.writer", null]],
    [for m in var.endpoint_invoker_members : [m, "project", "project", local.endpoint_invoker_role, null]],
    # flatten() would flatten the rows too: each is wrapped in an object first.
    [for p in flatten([for m in var.launcher_members : [for g in local.launcher_grants : { who = m, grant = g }]]) : concat([p.who], p.grant)],
  )

  grants = {
    for g in local.grant_rows : "${g[0]} ${g[1]} ${g[2]} ${g[3]}" => {
      who       = g[0]
      scope     = g[1]
      target    = g[2]
      name      = local.targets[g[1]][g[2]]
      role      = g[3]
      prefix    = g[4] == null ? null : var.prefixes[g[4]]
      condition = g[4]
    }
  }

  # Every identity's grants as "scope:resource role[ if prefix]": the README table and the
  # exact-IAM tests read this.
  access = {
    for who in distinct([for g in local.grant_rows : g[0]]) : who => sort([
      for g in local.grants : "${g.scope}:${g.name} ${g.role}${g.prefix == null ? "" : " if ${g.prefix}"}" if g.who == who
    ])
  }
}

locals {
  members = merge(
    {
      worker               = "serviceAccount:${google_service_account.worker.email}"
      training             = "serviceAccount:${google_service_account.training.email}"
      cloudbuild           = "serviceAccount:${google_service_account.cloudbuild.email}"
      serving              = "serviceAccount:${google_service_account.serving.email}"
      pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
    },
    { for m in setunion(var.launcher_members, var.model_publisher_members, var.image_pusher_members, var.endpoint_invoker_members) : m => m },
  )
  service_accounts = {
    worker     = google_service_account.worker.name
    cloudbuild = google_service_account.cloudbuild.name
    training   = google_service_account.training.name
    serving    = google_service_account.serving.name
  }
  by_scope = { for scope in keys(local.targets) : scope => { for k, g in local.grants : k => g if g.scope == scope } }
}

resource "google_project_iam_member" "this" {
  for_each = local.by_scope.project

  project = var.project_id
  role    = each.value.role
  member  = local.members[each.value.who]

  # The invoker grants name the custom role, which must exist first.
  depends_on = [google_project_iam_custom_role.endpoint_invoker]
}

resource "google_storage_bucket_iam_member" "this" {
  for_each = local.by_scope.bucket

  bucket = each.value.name
  role   = each.value.role
  member = local.members[each.value.who]

  dynamic "condition" {
    for_each = each.value.prefix == null ? [] : [each.value]
    content {
      title       = "only-${replace(condition.value.condition, "_", "-")}"
      description = "Objects under ${condition.value.prefix} only."
      expression  = "resource.name.startsWith(\"projects/_/buckets/${condition.value.name}/objects/${condition.value.prefix}\")"
    }
  }
}

resource "google_bigquery_table_iam_member" "this" {
  for_each = local.by_scope.table

  project    = var.project_id
  dataset_id = var.dataset_id
  table_id   = each.value.name
  role       = each.value.role
  member     = local.members[each.value.who]
}

resource "google_artifact_registry_repository_iam_member" "this" {
  for_each = local.by_scope.repository

  project    = var.project_id
  location   = var.artifact_registry.location
  repository = each.value.name
  role       = each.value.role
  member     = local.members[each.value.who]
}

resource "google_pubsub_topic_iam_member" "this" {
  for_each = local.by_scope.topic

  project = var.project_id
  topic   = each.value.name
  role    = each.value.role
  member  = local.members[each.value.who]
}

resource "google_pubsub_subscription_iam_member" "this" {
  for_each = local.by_scope.subscription

  project      = var.project_id
  subscription = each.value.name
  role         = each.value.role
  member       = local.members[each.value.who]
}

# Launching a job as the worker SA, a build as the builder, or a Vertex AI job as the training
# SA needs actAs on that one account, not on the project.
resource "google_service_account_iam_member" "this" {
  for_each = local.by_scope.service_account

  service_account_id = local.service_accounts[each.value.name]
  role               = each.value.role
  member             = local.members[each.value.who]
}
