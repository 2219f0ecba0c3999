# Terraform targets for infra/, included by the root Makefile (`make help` lists them).
# Cloud targets need terraform (>= 1.9) and gcloud on PATH, plus Application Default
# Credentials (`gcloud auth application-default login`). tools and tf-lint run offline.

TF ?= terraform
TF_ROOT := infra
# Looked up lazily and only once: targets that never read PROJECT_ID never run gcloud.
PROJECT_ID ?= $(eval PROJECT_ID := $(shell gcloud config get-value project 2>/dev/null))$(PROJECT_ID)
REGION ?= us-central1
TF_STATE_BUCKET ?= $(PROJECT_ID)-tfstate
TF_STATE_PREFIX ?= mnist-dataflow-kit
# 1/true/yes switch these on.
AUTO_APPROVE ?=
FORCE_DESTROY ?=
approve := $(filter 1 true yes,$(AUTO_APPROVE))
force := $(filter 1 true yes,$(FORCE_DESTROY))

TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION ?= 3.3.30
CHECKOV := $(TOOLS_VENV)/bin/checkov
# checkov pins many libraries that clash with the app's, so it gets its own venv, rebuilt
# only when the pinned version changes.
TOOLS_STAMP := $(TOOLS_VENV)/.installed-checkov-$(CHECKOV_VERSION)

# terraform apply cannot take -input=false while it still has to ask for approval.
tf_apply_flags = $(if $(approve),-input=false -auto-approve)
tf_init = $(TF) -chdir=$(TF_ROOT) init -input=false -reconfigure \
	-backend-config="bucket=$(TF_STATE_BUCKET)" -backend-config="prefix=$(TF_STATE_PREFIX)"

.PHONY: tools tf-lint tf-env cli-env bootstrap-state plan deploy destroy

$(TOOLS_STAMP):
	@test -x $(TOOLS_VENV)/bin/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install -q 'checkov==$(CHECKOV_VERSION)'
	@rm -f $(TOOLS_VENV)/.installed-*; touch $@

tools: $(TOOLS_STAMP) ## Create .venv-tools with checkov (idempotent)

tf-lint: tools ## terraform fmt -check and checkov over infra/ (offline)
	$(TF) fmt -check -recursive $(TF_ROOT)
	$(CHECKOV) -d $(TF_ROOT) --framework terraform --quiet --compact --skip-download

# Only the cloud targets see these, so `make test` never shells out to gcloud.
bootstrap-state plan deploy destroy: export TF_VAR_project_id = $(PROJECT_ID)
bootstrap-state plan deploy destroy: export TF_VAR_region = $(REGION)
bootstrap-state plan deploy destroy: export TF_VAR_force_destroy = $(if $(force),true,false)

tf-env:
	@command -v $(TF) >/dev/null || { echo "terraform not found: install Terraform >= 1.9."; exit 1; }
	@command -v gcloud >/dev/null || { echo "gcloud not found: install the Google Cloud CLI."; exit 1; }
	@test -n "$(PROJECT_ID)" || { echo "Set PROJECT_ID=... (or run: gcloud config set project ...)."; exit 1; }

# Bucket names are global: a PROJECT_ID-tfstate bucket may exist in someone else's project.
# Its owner is checked by project number before and after the settings are re-applied; any
# gcloud failure stops the target (set -e, pipefail, and the check refuses empty input).
state_check = $(PYTHON) $(TF_ROOT)/scripts/check_state_bucket.py --project-number "$$number"
describe_state = gcloud storage buckets describe gs://$(TF_STATE_BUCKET) --project=$(PROJECT_ID) --raw --format=json

cli-env:
	@test -x "$(MNISTKIT)" || command -v "$(MNISTKIT)" >/dev/null || { echo "$(MNISTKIT) not found: run make setup first (deploy ends with mnistkit config refresh)."; exit 1; }

bootstrap-state: tf-env ## Create or adopt the versioned GCS state bucket after checking this project owns it (TF_STATE_BUCKET=PROJECT_ID-tfstate)
	@set -euo pipefail; \
	number=$$(gcloud projects describe $(PROJECT_ID) --format='value(projectNumber)'); \
	if $(describe_state) >/dev/null 2>&1; then \
	  echo "State bucket gs://$(TF_STATE_BUCKET) exists; checking that project $(PROJECT_ID) owns it."; \
	else \
	  gcloud storage buckets create gs://$(TF_STATE_BUCKET) --project=$(PROJECT_ID) --location=$(REGION) \
	    --uniform-bucket-level-access --public-access-prevention; \
	fi; \
	$(describe_state) | $(state_check); \
	gcloud storage buckets update gs://$(TF_STATE_BUCKET) --uniform-bucket-level-access --public-access-prevention --versioning; \
	$(describe_state) | $(state_check) --hardened

plan: tf-env ## Show what deploy would change (PROJECT_ID=... REGION=...)
	$(tf_init)
	$(TF) -chdir=$(TF_ROOT) plan -input=false

# APIs go first on their own: a plan cannot read the GPU quota (or anything else) through
# an API that is still off. Enabling APIs is additive, so that step does not ask.
# The CLI is checked first so that a deploy never ends with resources the config does not know.
deploy: tf-env cli-env bootstrap-state ## Create or update all GCP resources, then refresh the CLI's config from the outputs (PROJECT_ID=... REGION=...; AUTO_APPROVE=1 skips the prompt)
	$(tf_init)
	$(TF) -chdir=$(TF_ROOT) apply -input=false -auto-approve -target=module.services
	$(TF) -chdir=$(TF_ROOT) apply $(tf_apply_flags)
	$(MNISTKIT) config refresh

# Destroy reads force_destroy / deletion_protection from state, not config, so
# FORCE_DESTROY=1 first applies them to the buckets and tables. A failing job listing stops it:
# an unknown answer is not "no jobs".
destroy: tf-env ## Delete what deploy made; asks unless AUTO_APPROVE=1; keeps non-empty buckets and tables unless FORCE_DESTROY=1
	@jobs=$$(gcloud dataflow jobs list --project=$(PROJECT_ID) --region=$(REGION) --status=active --format='value(id)') || { \
	  echo "Could not list active Dataflow jobs in $(PROJECT_ID) ($(REGION)); not destroying while that is unknown."; exit 1; }; \
	if [ -n "$$jobs" ]; then \
	  echo "Active Dataflow jobs still use the workers' network and account: $$jobs"; \
	  echo "Cancel them first: gcloud dataflow jobs cancel --region=$(REGION) JOB_ID"; exit 1; \
	fi
	@if [ -z "$(approve)" ]; then \
	  echo "This deletes the mnist-dataflow-kit resources in $(PROJECT_ID) ($(REGION))."; \
	  echo "$(if $(force),FORCE_DESTROY=1: bucket objects and BigQuery rows are deleted too.,Buckets that hold objects and the BigQuery tables are kept (FORCE_DESTROY=1 deletes them).)"; \
	  read -r -p "Type the project id to confirm: " answer; \
	  [ "$$answer" = "$(PROJECT_ID)" ] || { echo "Aborted."; exit 1; }; \
	fi
	$(tf_init)
	$(if $(force),$(TF) -chdir=$(TF_ROOT) apply -input=false -auto-approve -target=module.storage -target=module.bigquery)
	$(TF) -chdir=$(TF_ROOT) destroy -input=false -auto-approve
