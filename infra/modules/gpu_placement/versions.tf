terraform {
  # 1.9+: validation rules may refer to other variables and locals (the GPU catalog).
  required_version = ">= 1.9"
}
