from django.urls import path

app_name = "hosts"
urlpatterns: list = []
